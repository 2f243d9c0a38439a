-- One row per live Tweet: the newest version of each tweet_id, deleted Tweets dropped.

with

tweet_versions as (

    -- FINAL collapses the rows of a tweet_id to the newest ingested_at (the table's version
    -- column) whether or not a background merge has happened yet.
    select * from {{ source('tweetflow', 'raw_tweets') }} final

),

deleted_tweets as (

    select tweet_id from {{ source('tweetflow', 'tweet_deletes') }}

),

live_tweets as (

    select * from tweet_versions
    where tweet_id not in (select tweet_id from deleted_tweets)

),

renamed as (

    select
        ---------- ids
        tweet_id,
        author_id,
        conversation_id,
        replied_to_id,
        retweeted_id,
        quoted_id,
        in_reply_to_user_id,

        ---------- strings
        author_handle,
        lang,
        kind,
        text,
        source,
        country,

        ---------- entities (lower-cased at ingestion; may repeat within a Tweet)
        hashtags,
        mentions,
        cashtags,
        urls,
        domains,

        ---------- numerics
        retweet_count,
        reply_count,
        like_count,
        quote_count,
        impression_count,

        ---------- booleans
        possibly_sensitive as is_possibly_sensitive,

        ---------- timestamps
        created_at,
        ingested_at,

        ---------- lineage
        edit_history_tweet_ids,
        matching_rules,
        kafka_partition,
        kafka_offset

    from live_tweets

)

select * from renamed
