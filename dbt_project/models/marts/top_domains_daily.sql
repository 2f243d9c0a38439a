-- One row per linked domain per day and platform, ranked by Tweets linking to it (1 = most)
-- among the platform's domains of the day.

{{ config(
    order_by='(day, platform, rank)',
    partition_by='toYYYYMMDD(day)',
) }}

with

entity_counts_daily as (

    select * from {{ ref('entity_counts_daily') }}
    where {{ in_window('day') }}

),

domains as (

    select day, platform, entity as domain, count_tweets
    from entity_counts_daily
    where entity_type = 'domain'

),

ranked as (

    select
        day,
        platform,
        domain,
        count_tweets,
        -- Ties broken by name, so the ranking is the same on every rebuild and replay.
        row_number() over (partition by day, platform order by count_tweets desc, domain asc) as rank

    from domains

)

select * from ranked
