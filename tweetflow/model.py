"""The canonical Tweet model: what every payload format is parsed into, and what sinks write.

Why plain frozen dataclasses: the consumers build hundreds of thousands of these a second, and the
parser (not the model) is where input is validated, so the model carries no validation cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from tweetflow.platforms import Platform, platform_of
from tweetflow.snowflake import snowflake_time

TweetKind = Literal["original", "retweet", "quote", "reply"]
EventKind = Literal["tweet", "delete"]
TWEET_KINDS: tuple[str, ...] = ("original", "retweet", "quote", "reply")
# How long after posting X lets a Tweet be edited (30 minutes at launch, an hour since): every
# version of a chain is posted within it of the chain's root.
EDIT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Tweet:
    """One Tweet in canonical form; entity lists keep the text as written (no '#', '@' or '$')."""

    tweet_id: int
    author_id: int
    author_handle: str
    created_at: datetime  # timezone-aware UTC, millisecond precision
    lang: str
    text: str
    kind: TweetKind
    conversation_id: int = 0
    replied_to_id: int = 0
    retweeted_id: int = 0
    quoted_id: int = 0
    in_reply_to_user_id: int = 0
    hashtags: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    cashtags: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()  # expanded URLs
    domains: tuple[str, ...] = ()  # registered domain of each expanded URL, lower case
    retweet_count: int = 0
    reply_count: int = 0
    like_count: int = 0
    quote_count: int = 0
    impression_count: int = 0
    source: str = ""
    country: str = ""  # ISO 3166-1 alpha-2 from the place, if any
    possibly_sensitive: bool = False
    edit_history_tweet_ids: tuple[int, ...] = ()  # the edit chain, oldest first (see below)
    matching_rules: tuple[str, ...] = ()

    # An edit is a new Tweet (a new id) whose edit history lists its whole chain, oldest first;
    # the chain counts as one Tweet: the newest version's content at its root's time. Derived
    # rather than stored, so the fast parser's slot-by-slot construction needs no new field.
    @property
    def chain_root_id(self) -> int:
        """The first version of this Tweet's edit chain: its own id when it was never edited."""
        edits = self.edit_history_tweet_ids
        return edits[0] if edits else self.tweet_id

    @property
    def chain_created_at(self) -> datetime:
        """When the chain's root was posted, the time the chain counts at (so an edit never moves
        a Tweet to another bucket): this Tweet's own time for a root, else the root id's
        Snowflake time, the same whichever versions have arrived."""
        root = self.chain_root_id
        return self.created_at if root == self.tweet_id else snowflake_time(root)

    @property
    def platform(self) -> Platform:
        """Where it was posted ("x" or "bluesky"): a function of its platform-scoped id."""
        return platform_of(self.tweet_id)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened in the stream: a Tweet arrived, or a Tweet was deleted."""

    kind: EventKind
    tweet_id: int
    tweet: Tweet | None = None  # set when kind == "tweet"
    user_id: int = 0  # author of a deleted Tweet, when the payload says
    event_at: datetime | None = None  # when the delete happened, when the payload says
    extra: dict[str, str] = field(default_factory=dict)
