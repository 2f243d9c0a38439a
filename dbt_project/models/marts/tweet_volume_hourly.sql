-- One row per language and kind per hour: the minutely counts summed.

{{ config(
    order_by='(hour, lang, kind)',
    partition_by='toYYYYMMDD(hour)',
) }}

with

tweet_volume_minutely as (

    select * from {{ ref('tweet_volume_minutely') }}
    where {{ in_window('minute') }}

),

counted as (

    select
        toDateTime(toStartOfHour(minute), 'UTC') as hour,
        lang,
        kind,
        sum(count_tweets) as count_tweets

    from tweet_volume_minutely

    group by hour, lang, kind

)

select * from counted
