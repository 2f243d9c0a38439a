-- Daily entity counts are their hours summed, platform by platform: the two grains never drift apart, even after
-- windowed rebuilds. Returns the (day, platform, entity) rows where they disagree.

with

hourly_summed as (

    select toDate(hour) as day, platform, entity_type, entity, sum(count_tweets) as count_tweets
    from {{ ref('entity_counts_hourly') }}
    group by day, platform, entity_type, entity

),

daily as (

    select day, platform, entity_type, entity, count_tweets
    from {{ ref('entity_counts_daily') }}

),

compared as (

    select
        day,
        platform,
        entity_type,
        entity,
        hourly_summed.count_tweets as count_from_hours,
        daily.count_tweets as count_daily

    from hourly_summed
    full outer join daily using (day, platform, entity_type, entity)

)

select * from compared
where count_from_hours != count_daily
