-- One row per hashtag per hour it was used in, per platform: its count against its trailing
-- 24-hour average on that platform.

{{ config(
    order_by='(hour, platform, hashtag)',
    partition_by='toYYYYMMDD(hour)',
) }}

with

-- The window's hours plus the 24 hours before it, which the first hours' baselines need.
hashtag_counts_hourly as (

    select * from {{ ref('hashtag_counts_hourly') }}
    where {{ in_window('hour', lookback_hours=24) }}

),

with_baseline as (

    select
        hour,
        platform,
        hashtag,
        count_tweets,
        -- The 24 hours before `hour` (hours without the hashtag have no row and count as 0),
        -- averaged per hour. RANGE frames need a numeric key: epoch seconds.
        sum(count_tweets) over (
            partition by platform, hashtag
            order by toUInt32(hour)
            range between 86400 preceding and 1 preceding
        ) / 24 as baseline_avg

    from hashtag_counts_hourly

),

scored as (

    select
        hour,
        platform,
        hashtag,
        count_tweets,
        baseline_avg,
        count_tweets / greatest(baseline_avg, 1) as velocity,
        toBool(
            count_tweets >= {{ var('trending_min_tweets') }}
            and velocity >= {{ var('trending_min_velocity') }}
        ) as is_trending

    from with_baseline

)

select * from scored
where {{ in_window('hour') }}
