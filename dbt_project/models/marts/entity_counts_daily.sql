-- One row per entity per day and platform: the hourly counts summed (each Tweet sits in exactly one hour).

{{ config(
    order_by='(entity_type, entity, platform, day)',
    partition_by='toYYYYMMDD(day)',
) }}

with

entity_counts_hourly as (

    select * from {{ ref('entity_counts_hourly') }}
    where {{ in_window('hour') }}

),

counted as (

    select
        toDate(hour) as day,
        platform,
        entity_type,
        entity,
        sum(count_tweets) as count_tweets

    from entity_counts_hourly

    group by day, platform, entity_type, entity

)

select * from counted
