-- One row per hashtag per day and platform.

{{ config(
    order_by='(hashtag, platform, day)',
    partition_by='toYYYYMMDD(day)',
) }}

with

entity_counts_daily as (

    select * from {{ ref('entity_counts_daily') }}
    where {{ in_window('day') }}

),

hashtags as (

    select
        day,
        platform,
        entity as hashtag,
        count_tweets

    from entity_counts_daily

    where entity_type = 'hashtag'

)

select * from hashtags
