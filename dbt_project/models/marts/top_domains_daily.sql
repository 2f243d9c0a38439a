-- One row per linked domain per day, ranked by Tweets linking to it (1 = most).

{{ config(
    order_by='(day, rank)',
    partition_by='toYYYYMMDD(day)',
) }}

with

entity_counts_daily as (

    select * from {{ ref('entity_counts_daily') }}
    where {{ in_window('day') }}

),

domains as (

    select day, entity as domain, count_tweets
    from entity_counts_daily
    where entity_type = 'domain'

),

ranked as (

    select
        day,
        domain,
        count_tweets,
        -- Ties broken by name, so the ranking is the same on every rebuild and replay.
        row_number() over (partition by day order by count_tweets desc, domain asc) as rank

    from domains

)

select * from ranked
