-- One row per entity (hashtag, mention, cashtag, domain) per hour and platform: Tweets naming
-- it that hour.

{{ config(
    order_by='(entity_type, entity, platform, hour)',
    partition_by='toYYYYMMDD(hour)',
) }}

with

tweets as (

    select tweet_id, created_at, platform, hashtags, mentions, cashtags, domains
    from {{ ref('stg_tweets') }}
    where {{ in_window('created_at') }}

),

-- One row per Tweet per *distinct* entity: a Tweet repeating a hashtag counts once.
tweet_entities as (

    select created_at, platform, 'hashtag' as entity_type,
        arrayJoin(arrayDistinct(hashtags)) as entity
    from tweets

    union all

    select created_at, platform, 'mention' as entity_type,
        arrayJoin(arrayDistinct(mentions)) as entity
    from tweets

    union all

    select created_at, platform, 'cashtag' as entity_type,
        arrayJoin(arrayDistinct(cashtags)) as entity
    from tweets

    union all

    select created_at, platform, 'domain' as entity_type,
        arrayJoin(arrayDistinct(domains)) as entity
    from tweets

),

counted as (

    select
        toDateTime(toStartOfHour(created_at), 'UTC') as hour,
        platform,
        entity_type,
        entity,
        count() as count_tweets

    from tweet_entities

    group by hour, platform, entity_type, entity

)

select * from counted
