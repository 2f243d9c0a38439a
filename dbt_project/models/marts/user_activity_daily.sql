-- One row per author per day (an author id belongs to one platform, named by `platform`); Tweets
-- without an author (author_id 0) are left out.

{{ config(
    order_by='(day, platform, author_id)',
    partition_by='toYYYYMMDD(day)',
) }}

with

tweets as (

    select tweet_id, platform, author_id, author_handle, kind, created_at
    from {{ ref('stg_tweets') }}
    where author_id != 0 and {{ in_window('created_at') }}

),

counted as (

    select
        toDate(created_at) as day,
        platform,
        author_id,
        -- A handle can change within a day: the one on the author's last Tweet of it,
        -- lower-cased like mentions (the Redis `author` dimension uses the same form).
        lower(argMax(author_handle, (created_at, tweet_id))) as author_handle,
        count() as count_tweets,
        countIf(kind = 'original') as count_originals,
        countIf(kind = 'retweet') as count_retweets,
        countIf(kind = 'reply') as count_replies,
        countIf(kind = 'quote') as count_quotes

    from tweets

    group by day, platform, author_id

)

select * from counted
