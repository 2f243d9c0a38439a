"""How entities are normalized before they are counted, so every path counts them the same way.

ClickHouse's raw table, the Redis hot aggregates and the marts built from the raw table all count
these normalized values; doing it once here is what makes hot and mart numbers agree exactly.
"""

from __future__ import annotations

from tweetflow.model import Tweet


def lowered(values: tuple[str, ...]) -> list[str]:
    return [v.lower() for v in values]


def distinct_lowered(values: tuple[str, ...]) -> list[str]:
    """Lower-cased, de-duplicated, in first-seen order (a Tweet counts once per entity)."""
    return list(dict.fromkeys(v.lower() for v in values))


def author_member(tweet: Tweet) -> str | None:
    """The `author` dimension's member: the lower-cased handle, or None when there is no author."""
    if not tweet.author_id:
        return None
    return tweet.author_handle.lower() or f"id:{tweet.author_id}"
