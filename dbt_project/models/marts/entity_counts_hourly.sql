-- One row per entity (hashtag, mention, cashtag, domain) per hour: Tweets naming it that hour.

{{ config(
    order_by='(entity_type, entity, hour)',
    partition_by='toYYYYMMDD(hour)',
) }}

with

tweets as (

    select tweet_id, created_at, hashtags, mentions, cashtags, domains
    from {{ ref('stg_tweets') }}
    where {{ in_window('created_at') }}

),

-- One row per Tweet per *distinct* entity: a Tweet repeating a hashtag counts once.
tweet_entities as (

    select created_at, 'hashtag' as entity_type, arrayJoin(arrayDistinct(hashtags)) as entity
    from tweets

    union all

    select created_at, 'mention' as entity_type, arrayJoin(arrayDistinct(mentions)) as entity
    from tweets

    union all

    select created_at, 'cashtag' as entity_type, arrayJoin(arrayDistinct(cashtags)) as entity
    from tweets

    union all

    select created_at, 'domain' as entity_type, arrayJoin(arrayDistinct(domains)) as entity
    from tweets

),

counted as (

    select
        toDateTime(toStartOfHour(created_at), 'UTC') as hour,
        entity_type,
        entity,
        count() as count_tweets

    from tweet_entities

    group by hour, entity_type, entity

)

select * from counted
