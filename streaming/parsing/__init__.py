"""Turn raw Kafka message bytes into canonical `Event`s; anything else becomes `InvalidPayload`.

Accepted payloads (one Kafka message each):

* an X API v2 stream message `{"data": {...}, "includes": {...}, "matching_rules": [...]}`, with
  or without expansions; `data` may be a list (lookup responses): one event per Tweet;
* a v1.1 / enterprise "original format" Tweet;
* deletes: v1.1 `{"delete": {"status": {...}, "timestamp_ms": ...}}` and the v2 compliance
  stream's `{"data": {"delete": {"tweet": {...}, "event_at": ...}}}`;
* a Bluesky Jetstream `app.bsky.feed.post` commit (create, update, delete), as a Tweet or delete
  with a platform-scoped id (`jetstream`, `tweetflow.platforms`).

Why every failure is an `InvalidPayload`: a consumer must never crash on data, only route the
message to the dead-letter queue with a `reason_code` for headers and metrics: invalid_utf8,
invalid_json, oversize (over 1 MiB), unknown_shape, missing_field, wrong_type, invalid_value (right
type, impossible value), future_timestamp, or parser_error (a bug here, never the input's fault).

Decisions (the canonical form must be the same whichever format a Tweet arrived in):

* Retweet text: X truncates a retweet's own text ("RT @h: ...…" cut at 140 characters), losing
  the hashtags and links at the end. When the retweeted Tweet is in the payload (v1.1
  `retweeted_status`, v2 `includes.tweets`) the text is rebuilt as "RT @handle: <original full
  text>" and the entities are the original's plus a mention of its author (as X's own entity list
  for a retweet has), so a retweet amplifies every entity of what it retweets.
* Kind: retweet > quote > reply > original when several apply (a reply may quote). v2 takes it
  from `referenced_tweets`; a v2 Tweet without that field (default fields only) whose text starts
  with "RT @handle: " is still a retweet (the form X generates), with retweeted_id 0 (unknown).
  Nothing else is guessed: a leading "@" may or may not be a reply. Retweets carry no
  replied_to/quoted ids: those belong to the retweeted Tweet.
* Author: v2 default-field payloads carry none, so author_id 0 and handle "" are allowed for v2;
  a v1.1 Tweet always has `user`, so one without it is broken and rejected.
* created_at is UTC with milliseconds. Both formats give whole seconds; they are refined to
  milliseconds by v1.1 `timestamp_ms`, else by the Snowflake id, when that agrees on the second.
  v2 without created_at: derived from the Snowflake id (`tweetflow.snowflake`), ms = (id >> 22)
  + 1288834974657 (ids below 2**35 predate Snowflake and carry no time, so such a Tweet is
  rejected). More than a day in the future is rejected (clock skew is seconds; days mean a broken
  producer).
* Text: the API escapes "&", "<", ">" as HTML entities; they are unescaped. v2 `note_tweet` (long
  posts) and v1.1 `extended_tweet.full_text` win over the truncated `text`, with their entities.
* Entities come from the payload when it has them, else from `extract_entities(text)`. URLs: the
  unwound URL, else the expanded one, else the t.co link as written; v2 media links (with a
  `media_key`) are skipped, as v1.1 keeps them out of `entities.urls`. `domains[i]` is the
  registered domain of `urls[i]` from tldextract's bundled Public Suffix List snapshot (no network).
* v1.1 conversation_id: a Tweet that replies to nothing starts its own conversation (its own id);
  for a reply it is unknown (0). v2 takes the field as given, 0 when absent.
* Edits: an edit is a new Tweet whose edit history (v2 `edit_history_tweet_ids`, v1.1
  `edit_history.edit_tweet_ids`) lists its chain's versions oldest first; the first is the chain's
  root (`Tweet.chain_root_id`), by which the sinks count the chain once. A history that does not
  list the Tweet itself or is not in ascending order would give a wrong root: rejected.
* `null` counts as absent (v1.1 writes null liberally); any other type mismatch is rejected.

Speed: a common-shape v2 stream message takes a msgspec fast path (`v2_fast`) with the same
results; anything else, and every error, goes through the dict-based path.

Modules, each importing only those above it (the fast path uses the dict path's helpers, never
the other way round):

* `errors`: `InvalidPayload` and the reason codes;
* `fields`: typed access to decoded JSON (ids, counts, optional and required fields);
* `timestamps`: created_at in both formats, the future-timestamp check;
* `text_entities`: text unescaping, client names, entities (from the payload or the text), domains;
* `v1`, `v2`, `jetstream`: the dict path of each format;
* `v2_schema`, `v2_fast`: the msgspec schema and the fast path built on it;
* `dispatch`: `parse_payload`, which tries the fast path, then the dict path by shape.
"""

from streaming.parsing.dispatch import MAX_PAYLOAD_BYTES, parse_payload
from streaming.parsing.errors import (
    FUTURE_TIMESTAMP,
    INVALID_JSON,
    INVALID_UTF8,
    INVALID_VALUE,
    MISSING_FIELD,
    OVERSIZE,
    PARSER_ERROR,
    UNKNOWN_SHAPE,
    WRONG_TYPE,
    InvalidPayload,
)
from tweetflow.snowflake import SNOWFLAKE_EPOCH_MS, snowflake_time

__all__ = [
    "FUTURE_TIMESTAMP",
    "INVALID_JSON",
    "INVALID_UTF8",
    "INVALID_VALUE",
    "MAX_PAYLOAD_BYTES",
    "MISSING_FIELD",
    "OVERSIZE",
    "PARSER_ERROR",
    "SNOWFLAKE_EPOCH_MS",
    "UNKNOWN_SHAPE",
    "WRONG_TYPE",
    "InvalidPayload",
    "parse_payload",
    "snowflake_time",
]
