-- One row per day and platform: Tweets by kind and the public metrics of their newest versions, summed.

{{ config(
    order_by='(day, platform)',
    partition_by='toYYYYMMDD(day)',
) }}

with

tweets as (

    select created_at, platform, kind, like_count, retweet_count, reply_count, quote_count
    from {{ ref('stg_tweets') }}
    where {{ in_window('created_at') }}

),

summed as (

    select
        toDate(created_at) as day,
        platform,
        count() as count_tweets,
        countIf(kind = 'reply') as count_replies,
        countIf(kind = 'retweet') as count_retweets,
        countIf(kind = 'quote') as count_quotes,
        sum(like_count) as sum_like_count,
        sum(retweet_count) as sum_retweet_count,
        sum(reply_count) as sum_reply_count,
        sum(quote_count) as sum_quote_count

    from tweets

    group by day, platform

)

select * from summed
