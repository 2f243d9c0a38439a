"""The hot aggregates' dedup state: what each event counts, decided at the shard of its edit chain
(docs/effectively-once.md has the argument; tweetflow/hot_keys.py the keys).

An edit is a new Tweet with a new id whose edit history names the chain's root (its first
version). The chain counts as one Tweet, with its newest version's members (the highest id) at its
root's time. Each id has a state at its *home shard* (the shard of the partition its messages
land in), one small hash field (tweetflow/hot_keys.py):
- `<fingerprint>` (digits): the chain rooted at this id counts this id's content (an unedited
  Tweet: nearly every id); the fingerprint is 12 bits of the content's hash, so the same id
  re-sent with other content (a re-fetch) replaces what it counted, as ClickHouse keeps an id's
  newest row, while a copy counts nothing;
- `v<version>.<fingerprint>`: the chain rooted at this id counts that later version;
- `r<root>`: an id the chain rooted at <root> lists (so a delete of it finds the chain);
- `D`: deleted (the chain rooted here, or an id not known yet: whatever lists it comes later);
- `d<root>`: deleted, and listed by the chain rooted at <root>.
Only ids and fingerprints are stored, never what a Tweet counted: subtracting a version (a delete,
or a newer version replacing it) reads its members back from the raw store
(streaming/sinks/versions.py) and takes the row whose fingerprint is the one counted. What a
chain adds and subtracts goes to the counters of its root's platform (`Plan.count`): one bit test
and one dict look-up per version counted.

Events become operations, each applied at one shard (one slot in Redis Cluster):
- `version(t)` at home(root): counts t if its chain has no newer version and is not deleted;
- `link(e, root)` at home(e), for every other id t lists: remembers e's chain, or, if e was
  deleted first, emits `kill(root)`;
- `delete(x)` at home(x): subtracts the chain rooted at x, or emits `kill(root)` for the chain
  that lists x;
- `kill(root)` at home(root): subtracts the chain and marks it deleted.
Every operation is a fact about the stream, so applying one twice changes nothing, and the state
of a chain depends on the set of operations, not their order: a shard can apply one as soon as it
arrives, whichever worker sends it, and a crash only means sending it again.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Literal

from streaming.normalize import author_member, distinct_lowered
from tweetflow.hot_keys import bucket_start
from tweetflow.model import Event, Tweet
from tweetflow.platforms import platform_of
from tweetflow.snowflake import snowflake_ms

DELETED = "D"
_VERSION, _POINTER, _DELETED_IN = "v", "r", "d"
# A member is one letter for its dimension and then the value ("hpython").
CODE = {"lang": "l", "kind": "k", "author": "a", "hashtag": "h", "mention": "m", "cashtag": "c",
        "domain": "d"}
DIM = {code: dim for dim, code in CODE.items()}
OpKind = Literal["version", "link", "delete", "kill"]
VersionKey = tuple[int, int]  # (version id, fingerprint of its content)


@dataclass
class ApplyResult:
    counted: int = 0  # chains counted for the first time
    updated: int = 0  # newer versions (edits) of counted chains
    duplicates: int = 0  # copies, older versions, versions of deleted chains, repeated deletes
    deletes: int = 0
    cold: int = 0  # older than the hot horizon: ClickHouse only
    already_applied: bool = False
    retries: int = 0

    def add(self, other: ApplyResult) -> None:
        for name in ("counted", "updated", "duplicates", "deletes", "cold"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class Op:
    """One operation on the state of `tweet_id` (the id its home shard is that of)."""

    kind: OpKind
    tweet_id: int
    tweet: Tweet | None = None  # version
    root: int = 0  # link


@dataclass
class Counts:
    """What a plan changes in one platform's counters (tweetflow/hot_keys.py)."""

    tweets: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # minute -> delta
    members: Counter[tuple[int, str]] = field(default_factory=Counter)
    authors: set[tuple[int, str]] = field(default_factory=set)  # (minute, author id)


@dataclass
class Plan:
    """A shard's share of a batch, aggregated: per platform, minute and member, summed over its
    Tweets; the states it read (for the script to re-check) and wrote; operations for other
    shards."""

    counts: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    reads: dict[int, str | None] = field(default_factory=dict)  # id -> state the plan relied on
    writes: dict[int, str] = field(default_factory=dict)  # id -> its new state
    remote: list[Op] = field(default_factory=list)
    missing_states: set[int] = field(default_factory=set)  # not looked up: plan again
    missing_versions: set[VersionKey] = field(default_factory=set)  # content unknown: again
    result: ApplyResult = field(default_factory=ApplyResult)

    @property
    def complete(self) -> bool:
        return not (self.missing_states or self.missing_versions)

    def count(self, root: int, minute: int, members: Iterable[str], sign: int,
              author_id: int) -> None:
        """Add (sign 1) or subtract (-1) a version of the chain rooted at `root`, under its
        root's platform: what subtracts a chain names the same root as what counted it."""
        counts = self.counts[platform_of(root)]
        counts.tweets[minute] += sign
        pairs = zip(repeat(minute), members)
        if sign > 0:
            counts.members.update(pairs)  # Counter counts in C: the hottest loop of the plan
            if author_id:
                counts.authors.add((minute, str(author_id)))
        else:
            counts.members.subtract(pairs)


def event_ops(event: Event) -> list[Op]:
    """The operations an event becomes (each is applied at the home shard of its id)."""
    tweet = event.tweet
    if event.kind != "tweet" or tweet is None:
        return [Op("delete", event.tweet_id)]
    root = tweet.chain_root_id
    ops = [Op("version", root, tweet)]
    if len(tweet.edit_history_tweet_ids) > 1 or tweet.tweet_id != root:
        ops += [Op("link", i, root=root)
                for i in dict.fromkeys((*tweet.edit_history_tweet_ids, tweet.tweet_id))
                if i != root]
    return ops


class Planner:
    """Applies operations to one shard's states as read before planning (`found`: id -> state,
    for every id looked up), with the contents of the versions known (`versions`)."""

    def __init__(self, found: dict[int, str | None], versions: dict[VersionKey, Tweet],
                 local: Callable[[int], bool]) -> None:
        self.found, self.versions, self.local = found, versions, local
        self.plan = Plan()

    def run(self, ops: Iterable[Op]) -> Plan:
        queue = deque(ops)
        while queue:
            for emitted in self._apply(queue.popleft()):
                (queue if self.local(emitted.tweet_id) else self.plan.remote).append(emitted)
        return self.plan

    def get(self, tweet_id: int) -> str | None:
        plan = self.plan
        if tweet_id in plan.writes:
            return plan.writes[tweet_id]
        if tweet_id not in self.found:
            plan.missing_states.add(tweet_id)
            return None
        state = plan.reads[tweet_id] = self.found[tweet_id]
        return state

    def set(self, tweet_id: int, state: str) -> None:
        self.get(tweet_id)  # every write follows a read of the same id (the script re-checks it)
        self.plan.writes[tweet_id] = state

    def _apply(self, op: Op) -> list[Op]:
        if op.kind == "version":
            assert op.tweet is not None
            self._version(op.tweet_id, op.tweet)
            return []
        if op.kind == "link":
            return self._link(op.tweet_id, op.root)
        if op.kind == "delete":
            return self._delete(op.tweet_id)
        self._kill(op.tweet_id)
        return []

    def _version(self, root: int, tweet: Tweet) -> None:
        plan, version = self.plan, tweet.tweet_id
        state = self.get(root)
        if _deleted(state):
            plan.result.duplicates += 1
            return
        minute, members = chain_members(tweet)
        content = fingerprint(minute, members)
        self.versions.setdefault((version, content), tweet)
        counted = _counted(state, root)
        if counted is None:
            plan.result.counted += 1
        elif version < counted[0] or (version, content) == counted:
            plan.result.duplicates += 1  # older than the version counted, or a copy of it
            return
        else:  # a newer version, or new content under the counted id: it replaces what it counted
            self._subtract(root, counted)
            plan.result.updated += 1
        plan.count(root, minute, members, +1, tweet.author_id)
        self.set(root, str(content) if version == root else f"{_VERSION}{version}.{content}")

    def _link(self, tweet_id: int, root: int) -> list[Op]:
        state = self.get(tweet_id)
        if state is None:
            self.set(tweet_id, f"{_POINTER}{root}")
            return []
        if state == DELETED:  # deleted before a version listing it arrived
            self.set(tweet_id, f"{_DELETED_IN}{root}")
            return [Op("kill", root)]
        return [Op("kill", root)] if state[0] == _DELETED_IN else []

    def _delete(self, tweet_id: int) -> list[Op]:
        state = self.get(tweet_id)
        if state is None:
            self.set(tweet_id, DELETED)  # nothing counted yet: whatever comes later counts nothing
        elif state == DELETED:
            self.plan.result.duplicates += 1
        elif state[0] == _DELETED_IN:  # a repeated delete: its chain's kill again, in case the
            self.plan.result.duplicates += 1  # first attempt stopped before sending it
            return [Op("kill", int(state[1:]))]
        elif state[0] == _POINTER:
            self.set(tweet_id, f"{_DELETED_IN}{state[1:]}")
            return [Op("kill", int(state[1:]))]
        else:
            self._remove(tweet_id, state)
        return []

    def _kill(self, root: int) -> None:
        state = self.get(root)
        if _deleted(state):
            return
        if _counted(state, root) is None:
            self.set(root, DELETED)
        else:
            self._remove(root, state)

    def _remove(self, root: int, state: str) -> None:
        """Subtract what a counted chain counts and mark it deleted."""
        counted = _counted(state, root)
        assert counted is not None
        self._subtract(root, counted)
        self.plan.result.deletes += 1
        self.set(root, DELETED)

    def _subtract(self, root: int, counted: VersionKey) -> None:
        tweet = self.versions.get(counted)
        if tweet is None:
            self.plan.missing_versions.add(counted)
            return
        self.plan.count(root, *chain_members(tweet), -1, 0)


def _deleted(state: str | None) -> bool:
    return state is not None and (state == DELETED or state[0] == _DELETED_IN)


def _counted(state: str | None, root: int) -> VersionKey | None:
    """(version, fingerprint) a root's state counts, else None (no state, or a pointer: an id
    listed as another chain's version and now seen as a root, inconsistent histories, counts as
    none)."""
    if state is None or not state:
        return None
    if state[0].isdigit():
        return root, int(state)
    if state[0] == _VERSION:
        version, _, content = state[1:].partition(".")
        return int(version), int(content)
    return None


def fingerprint(minute: int, members: list[str]) -> int:
    """12 bits of a content's hash: tells a copy from a re-fetch with other content (a stored
    listpack integer of 2 bytes)."""
    return zlib.crc32("\x1f".join((str(minute), *members)).encode()) & 0xFFF


def seen_hour(tweet_id: int) -> int:
    return snowflake_ms(tweet_id) // 3_600_000 * 3600


def chain_members(tweet: Tweet) -> tuple[int, list[str]]:
    """The minute (of the chain's root) and the members (dimension letter + value) a version adds
    to; a delete, or a newer version, later subtracts exactly these."""
    members = [f"l{tweet.lang}", f"k{tweet.kind}"]
    author = author_member(tweet)
    if author:
        members.append(f"a{author}")
    for code, values in (("h", tweet.hashtags), ("m", tweet.mentions), ("c", tweet.cashtags),
                         ("d", tweet.domains)):
        if len(values) == 1:  # the common case, without distinct_lowered's dict
            members.append(code + values[0].lower())
        elif values:
            members.extend(code + v for v in distinct_lowered(values))
    return bucket_start(tweet.chain_created_at.timestamp(), "m"), members
