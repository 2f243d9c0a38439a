-- One row per language and kind per minute.

{{ config(
    order_by='(minute, lang, kind)',
    partition_by='toYYYYMMDD(minute)',
) }}

with

tweets as (

    select created_at, lang, kind
    from {{ ref('stg_tweets') }}
    where {{ in_window('created_at') }}

),

counted as (

    select
        toDateTime(toStartOfMinute(created_at), 'UTC') as minute,
        lang,
        kind,
        count() as count_tweets

    from tweets

    group by minute, lang, kind

)

select * from counted
