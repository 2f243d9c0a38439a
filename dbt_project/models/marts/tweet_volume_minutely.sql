-- One row per platform, language and kind per minute.

{{ config(
    order_by='(minute, platform, lang, kind)',
    partition_by='toYYYYMMDD(minute)',
) }}

with

tweets as (

    select created_at, platform, lang, kind
    from {{ ref('stg_tweets') }}
    where {{ in_window('created_at') }}

),

counted as (

    select
        toDateTime(toStartOfMinute(created_at), 'UTC') as minute,
        platform,
        lang,
        kind,
        count() as count_tweets

    from tweets

    group by minute, platform, lang, kind

)

select * from counted
