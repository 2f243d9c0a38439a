-- One row per hashtag per hour and platform.

{{ config(
    order_by='(hashtag, platform, hour)',
    partition_by='toYYYYMMDD(hour)',
) }}

with

entity_counts_hourly as (

    select * from {{ ref('entity_counts_hourly') }}
    where {{ in_window('hour') }}

),

hashtags as (

    select
        hour,
        platform,
        entity as hashtag,
        count_tweets

    from entity_counts_hourly

    where entity_type = 'hashtag'

)

select * from hashtags
