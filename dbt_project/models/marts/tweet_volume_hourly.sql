-- One row per platform, language and kind per hour: the minutely counts summed.

{{ config(
    order_by='(hour, platform, lang, kind)',
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
        platform,
        lang,
        kind,
        sum(count_tweets) as count_tweets

    from tweet_volume_minutely

    group by hour, platform, lang, kind

)

select * from counted
