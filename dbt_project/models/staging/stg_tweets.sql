-- One row per live Tweet. An edited Tweet is a chain of versions, each a Tweet with its own id
-- (chain_root_id names the first): the chain is one row, its newest version (the highest
-- tweet_id) at its root's time, so an edit never moves a Tweet to another bucket. A delete of any
-- id a chain lists removes the chain.

with

tweet_versions as (

    -- FINAL collapses the rows of a tweet_id to the newest ingested_at (the table's version
    -- column) whether or not a background merge has happened yet.
    select * from {{ source('tweetflow', 'raw_tweets') }} final

),

deleted_tweets as (

    select tweet_id from {{ source('tweetflow', 'tweet_deletes') }}

),

-- The versions of edited Tweets (rows of raw_tweets whose edit history lists more than one id;
-- a Tweet never edited lists itself), about 1 % of the Tweets, kept apart so that staging never
-- reads raw_tweets whole (tweetflow/schema.py). Copies change nothing below.
edit_chains as (

    select
        chain_root_id,
        max(tweet_id) as newest_id,
        groupUniqArray(tweet_id) as version_ids,
        max(listed_id in (select tweet_id from deleted_tweets)) as is_deleted
    from {{ source('tweetflow', 'raw_tweet_edits') }}
    array join edit_history_tweet_ids as listed_id
    group by chain_root_id

),

-- Every version of an edited Tweet but the newest, and every version of one whose chain lists
-- a deleted id: they do not count.
replaced_versions as (

    select arrayJoin(arrayFilter(
        version_id -> is_deleted or version_id != newest_id,
        arrayPushBack(version_ids, chain_root_id)
    )) as tweet_id
    from edit_chains

),

live_tweets as (

    select * from tweet_versions
    where tweet_id not in (select tweet_id from deleted_tweets)
        and tweet_id not in (select tweet_id from replaced_versions)

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
        platform,  -- 'x' or 'bluesky', derived from the id (tweetflow/platforms.py)
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
        -- The chain's root's time (an edit never moves a Tweet), indexed: a mart's window
        -- reads the granules of its own time only.
        chain_created_at as created_at,
        ingested_at,

        ---------- lineage
        chain_root_id,
        edit_history_tweet_ids,
        matching_rules,
        kafka_partition,
        kafka_offset

    from live_tweets

)

select * from renamed
