"""msgspec schema of an X API v2 filtered-stream message, for the parser's fast path.

Why a schema: decoding straight into these `Struct`s validates every type in C and gives the
parser attributes instead of dicts to walk with a type check per `.get` (most of the parser's
CPU). `streaming.parsing.v2_fast` uses it for the common message shape only and falls back to the
dict-based path on any decode error, which also produces every error message.

Why `forbid_unknown_fields` everywhere and only precise types: a successful decode must mean that
`orjson.loads` accepts the same bytes and yields the same values. msgspec does not validate what it
skips (invalid UTF-8 in an unknown field's string, a number like 1e400 that orjson rejects as
infinite, arbitrary nesting), so nothing may be skipped: a field not declared here, however
harmless, sends the message to the dict path (as `note_tweet` and compliance events do, which the
fast path leaves to it). For the same reason every integer is bounded to 64 bits (orjson turns
larger JSON integers into floats, or rejects them); floats are safe (msgspec rejects what would be
infinite, as orjson does). The documented fields the parser ignores are declared too (`start`,
`display_url`, `context_annotations`, user and media fields, ...), so that a stream requesting
them still decodes here. A field X adds later costs speed (a failed decode on top of the dict
path) until it is declared here.

`null` is accepted wherever the parser treats it as absent; the structs hold no cycles, so
`gc=False` (cheaper allocation) is safe.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = ["V2_MESSAGE_DECODER", "Message"]

# orjson gives an int only for JSON integers within 64 bits (a float, or an error, beyond), msgspec
# an int of any size: accept signed 64-bit integers only.
_Int = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
_Count = Annotated[int, Meta(ge=0, le=2**32 - 1)]  # what the parser accepts as a count (UInt32)
_Impressions = Annotated[int, Meta(ge=0, le=2**63 - 1)]


class _Strict(Struct, forbid_unknown_fields=True, gc=False):
    """Base of every struct here: an undeclared field fails the decode (see the module doc)."""


class Tag(_Strict):
    """A hashtag or cashtag entity."""

    tag: str
    start: _Int | None = None
    end: _Int | None = None


class Mention(_Strict):
    username: str
    id: str | None = None
    start: _Int | None = None
    end: _Int | None = None


class Image(_Strict):
    url: str | None = None
    width: _Int | None = None
    height: _Int | None = None


class Url(_Strict):
    """A URL entity; `media_key` is UNSET when absent (the parser skips it when present at all)."""

    url: str | None = None
    expanded_url: str | None = None
    unwound_url: str | None = None
    display_url: str | None = None
    media_key: str | UnsetType | None = UNSET
    status: _Int | None = None
    title: str | None = None
    description: str | None = None
    images: list[Image] | None = None
    start: _Int | None = None
    end: _Int | None = None


class Annotation(_Strict):
    start: _Int | None = None
    end: _Int | None = None
    probability: float | None = None
    type: str | None = None
    normalized_text: str | None = None


class Entities(_Strict):
    hashtags: list[Tag] | None = None
    mentions: list[Mention] | None = None
    cashtags: list[Tag] | None = None
    urls: list[Url] | None = None
    annotations: list[Annotation] | None = None


class Reference(_Strict):
    type: str
    id: str | None = None


class PublicMetrics(_Strict):
    retweet_count: _Count | None = None
    reply_count: _Count | None = None
    like_count: _Count | None = None
    quote_count: _Count | None = None
    impression_count: _Impressions | None = None
    bookmark_count: _Int | None = None


class Point(_Strict):
    type: str | None = None
    coordinates: list[float] | None = None


class Geo(_Strict):
    place_id: str | None = None
    coordinates: Point | None = None


class Attachments(_Strict):
    media_keys: list[str] | None = None
    poll_ids: list[str] | None = None
    media_source_tweet_id: list[str] | None = None


class ContextItem(_Strict):
    id: str | None = None
    name: str | None = None
    description: str | None = None


class ContextAnnotation(_Strict):
    domain: ContextItem | None = None
    entity: ContextItem | None = None


class EditControls(_Strict):
    edits_remaining: _Int | None = None
    is_edit_eligible: bool | None = None
    editable_until: str | None = None


class Withheld(_Strict):
    copyright: bool | None = None
    country_codes: list[str] | None = None
    scope: str | None = None


class Tweet(_Strict):
    """`data`, or an item of `includes.tweets`."""

    id: str
    text: str
    edit_history_tweet_ids: list[str] | None = None
    author_id: str | None = None
    created_at: str | None = None
    conversation_id: str | None = None
    in_reply_to_user_id: str | None = None
    lang: str | None = None
    source: str | None = None
    possibly_sensitive: bool | None = None
    entities: Entities | None = None
    referenced_tweets: list[Reference] | None = None
    public_metrics: PublicMetrics | None = None
    geo: Geo | None = None
    attachments: Attachments | None = None
    context_annotations: list[ContextAnnotation] | None = None
    edit_controls: EditControls | None = None
    display_text_range: list[_Int] | None = None
    reply_settings: str | None = None
    withheld: Withheld | None = None


class UserMetrics(_Strict):
    followers_count: _Int | None = None
    following_count: _Int | None = None
    tweet_count: _Int | None = None
    listed_count: _Int | None = None
    like_count: _Int | None = None
    media_count: _Int | None = None


class UrlEntities(_Strict):
    urls: list[Url] | None = None


class UserEntities(_Strict):
    url: UrlEntities | None = None
    description: Entities | None = None


class User(_Strict):
    id: str
    username: str | None = None
    name: str | None = None
    created_at: str | None = None
    description: str | None = None
    entities: UserEntities | None = None
    location: str | None = None
    pinned_tweet_id: str | None = None
    profile_image_url: str | None = None
    protected: bool | None = None
    public_metrics: UserMetrics | None = None
    url: str | None = None
    verified: bool | None = None
    verified_type: str | None = None
    withheld: Withheld | None = None


class NoProperties(_Strict):
    """`{}`: the GeoJSON `properties` X sends for a place."""


class PlaceGeo(_Strict):
    type: str | None = None
    bbox: list[float] | None = None
    properties: NoProperties | None = None


class Place(_Strict):
    id: str
    country_code: str | None = None
    name: str | None = None
    full_name: str | None = None
    country: str | None = None
    place_type: str | None = None
    contained_within: list[str] | None = None
    geo: PlaceGeo | None = None


class MediaMetrics(_Strict):
    view_count: _Int | None = None


class Variant(_Strict):
    bit_rate: _Int | None = None
    content_type: str | None = None
    url: str | None = None


class Media(_Strict):
    media_key: str
    type: str | None = None
    url: str | None = None
    preview_image_url: str | None = None
    width: _Int | None = None
    height: _Int | None = None
    duration_ms: _Int | None = None
    alt_text: str | None = None
    public_metrics: MediaMetrics | None = None
    variants: list[Variant] | None = None


class PollOption(_Strict):
    position: _Int | None = None
    label: str | None = None
    votes: _Int | None = None


class Poll(_Strict):
    id: str
    options: list[PollOption] | None = None
    duration_minutes: _Int | None = None
    end_datetime: str | None = None
    voting_status: str | None = None


class Includes(_Strict):
    users: list[User] | None = None
    tweets: list[Tweet] | None = None
    places: list[Place] | None = None
    media: list[Media] | None = None
    polls: list[Poll] | None = None


class Rule(_Strict):
    id: str | None = None
    tag: str | None = None


class Message(_Strict):
    data: Tweet
    includes: Includes | None = None
    matching_rules: list[Rule] | None = None


V2_MESSAGE_DECODER = msgspec.json.Decoder(Message)
