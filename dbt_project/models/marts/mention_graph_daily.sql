-- One row per (author handle, mentioned handle) per day and platform: Tweets in
-- which the one mentions the other.

{{ config(
    order_by='(day, platform, source_handle, target_handle)',
    partition_by='toYYYYMMDD(day)',
) }}

with

tweets as (

    select created_at, platform, author_handle, mentions
    from {{ ref('stg_tweets') }}
    -- An edge needs a named source: Tweets whose payload names no author are left out.
    where author_handle != '' and {{ in_window('created_at') }}

),

edges as (

    select
        toDate(created_at) as day,
        platform,
        lower(author_handle) as source_handle,
        arrayJoin(arrayDistinct(mentions)) as target_handle

    from tweets

),

counted as (

    select
        day,
        platform,
        source_handle,
        target_handle,
        count() as count_mentions

    from edges

    group by day, platform, source_handle, target_handle

)

select * from counted
