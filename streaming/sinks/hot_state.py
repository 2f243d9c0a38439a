"""The hot aggregates' dedup state: what each event counts, decided against the `seen` entry of
its Tweet's edit chain (docs/effectively-once.md has the argument, including atomicity).

An edit is a new Tweet with a new id whose edit history names the chain's root (its first
version). The chain counts as one Tweet, with its newest version's members (the highest id) at
its root's time, so every version is accounted against one entry: the root's. A `seen` hash field
(`tf:seen:{hour}`, the hour of the id's Snowflake time) holds, per id:
- a contribution "<minute>[/<version>]<US><member><US>...": the chain rooted at this id counts
  these members at this minute (minutes after the entry's hour); `/<version>` names the version
  counted when it is not the root itself, so an older version arriving later counts nothing;
- "D": deleted. On a root: the whole chain. On any other id: whichever chain lists it is deleted
  when it arrives (a delete may come before the versions it removes);
- "r<root>": an id the chain rooted at <root> lists, so a delete of an edit finds its chain.
A Tweet never edited (nearly all) has exactly one entry, its own, as before chains existed.

Costs: nothing for unedited Tweets; per edit, one pointer per version it lists that has none yet,
and one more HMGET round trip in a batch where a delete names an edit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat

from streaming.normalize import author_member, distinct_lowered
from tweetflow.hot_keys import bucket_start, seen_key
from tweetflow.model import Event, Tweet
from tweetflow.snowflake import snowflake_ms

DELETED = "D"
POINTER = "r"
_FIELD, _ITEM, _VERSION = "\x1f", "\x1e", "/"
# A member is one letter for its dimension and then the value ("hpython"): the contribution kept
# per Tweet id is most of the dedup state's memory, so it is kept short.
CODE = {"lang": "l", "kind": "k", "author": "a", "hashtag": "h", "mention": "m", "cashtag": "c",
        "domain": "d"}
DIM = {code: dim for dim, code in CODE.items()}


@dataclass
class ApplyResult:
    counted: int = 0  # chains counted for the first time
    updated: int = 0  # newer versions (edits, or new content under one id) of counted chains
    duplicates: int = 0  # copies, older versions, versions of deleted chains, repeated deletes
    deletes: int = 0
    cold: int = 0  # older than the hot horizon: ClickHouse only
    already_applied: bool = False
    retries: int = 0


@dataclass
class Plan:
    """A batch's effect, aggregated: per minute and member, summed over the batch's Tweets."""

    seen_hours: dict[str, int] = field(default_factory=dict)  # seen key -> its hour
    checks: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seen: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    tweets: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # minute -> delta
    members: Counter[tuple[int, str]] = field(default_factory=Counter)
    authors: set[tuple[int, str]] = field(default_factory=set)  # (minute, author id)
    result: ApplyResult = field(default_factory=ApplyResult)

    def count(self, minute: int, members: Iterable[str], sign: int, author_id: int) -> None:
        self.tweets[minute] += sign
        pairs = zip(repeat(minute), members)
        if sign > 0:
            self.members.update(pairs)  # Counter counts in C: the hottest loop of the plan
            if author_id:
                self.authors.add((minute, str(author_id)))
        else:
            self.members.subtract(pairs)


class SeenStates:
    """The `seen` entries a plan reads and writes. Reads come from this batch's earlier writes,
    else from what was looked up in Redis before planning (`found`, for the ids in `asked`); the
    first read of an id is recorded for the script to re-check, every write is queued for it."""

    def __init__(self, plan: Plan, prefix: str, asked: set[int], found: dict[int, str]) -> None:
        self.plan, self.prefix, self.asked, self.found = plan, prefix, asked, found
        self.local: dict[int, str] = {}
        self.keys: dict[int, str] = {}  # hour -> seen key
        self.slots: dict[int, tuple[str, int]] = {}  # id -> (seen key, hour): each id's once

    def get(self, tweet_id: int) -> str | None:
        if tweet_id in self.local:
            return self.local[tweet_id]
        if tweet_id not in self.asked:
            raise KeyError(f"seen state of {tweet_id} was not looked up before planning")
        state = self.local[tweet_id] = self.found.get(tweet_id)  # type: ignore[assignment]
        self.plan.checks[self.slot(tweet_id)[0]].extend((str(tweet_id), state or ""))
        return state

    def set(self, tweet_id: int, state: str) -> None:
        self.local[tweet_id] = state
        self.plan.seen[self.slot(tweet_id)[0]].extend((str(tweet_id), state))

    def slot(self, tweet_id: int) -> tuple[str, int]:
        """The id's seen key and its hour."""
        slot = self.slots.get(tweet_id)
        if slot is None:
            hour = seen_hour(tweet_id)
            key = self.keys.get(hour)
            if key is None:
                key = self.keys[hour] = seen_key(self.prefix, hour)
                self.plan.seen_hours[key] = hour
            slot = self.slots[tweet_id] = (key, hour)
        return slot


def chain_ids(event: Event) -> tuple[int, ...]:
    """The ids whose `seen` state accounting `event` may read (a delete's chain root aside)."""
    tweet = event.tweet
    if tweet is None or len(tweet.edit_history_tweet_ids) <= 1:
        return (event.tweet_id,)
    return (*tweet.edit_history_tweet_ids, event.tweet_id)


def pointed_root(state: str | None) -> int | None:
    """The chain root a pointer entry names, else None."""
    return int(state[1:]) if state and state[0] == POINTER else None


def account(plan: Plan, states: SeenStates, event: Event) -> None:
    """Count one event against its chain's `seen` state, updating that state."""
    if event.kind == "tweet" and event.tweet is not None:
        _account_version(plan, states, event.tweet)
        return
    root = pointed_root(states.get(event.tweet_id))
    if root is None:
        root = event.tweet_id
    _remove_chain(plan, states, root, deleting=True)


def _account_version(plan: Plan, states: SeenStates, tweet: Tweet) -> None:
    root, version, edits = tweet.chain_root_id, tweet.tweet_id, tweet.edit_history_tweet_ids
    others = () if len(edits) <= 1 else [i for i in dict.fromkeys((*edits, version)) if i != root]
    if others and any(states.get(i) == DELETED for i in others):  # a delete of an edit came first
        _remove_chain(plan, states, root, deleting=False)
        return
    state = _chain_state(states.get(root))
    if state == DELETED:
        plan.result.duplicates += 1
        return
    hour = states.slot(root)[1]
    minute, members = chain_members(tweet)
    head = str((minute - hour) // 60) + ("" if version == root else f"{_VERSION}{version}")
    contribution = _FIELD.join((head, *members))
    if state is None:
        plan.result.counted += 1
    elif state == contribution or version < _counted_version(state, root):
        plan.result.duplicates += 1  # a copy, or older than the version counted
        contribution = ""
    else:  # a newer version (or new content under the counted id): it replaces what was counted
        plan.count(*decode(state, hour), -1, 0)
        plan.result.updated += 1
    if contribution:
        plan.count(minute, members, +1, tweet.author_id)
        states.set(root, contribution)
    for i in others:
        if states.get(i) is None:
            states.set(i, f"{POINTER}{root}")


def _remove_chain(plan: Plan, states: SeenStates, root: int, *, deleting: bool) -> None:
    """Subtract what the chain counted, if anything, and mark it deleted. `deleting`: for a
    delete event (else a version of a chain one of whose ids was deleted before it arrived)."""
    state = _chain_state(states.get(root))
    if state == DELETED:
        plan.result.duplicates += 1
        return
    if state is not None:
        plan.count(*decode(state, states.slot(root)[1]), -1, 0)
        plan.result.deletes += 1
    elif not deleting:
        plan.result.duplicates += 1
    states.set(root, DELETED)


def _chain_state(state: str | None) -> str | None:
    """A root's entry; a pointer there (an id listed as another chain's version, and now as a
    root: inconsistent histories) is treated as no state."""
    return None if pointed_root(state) is not None else state


def _counted_version(contribution: str, root: int) -> int:
    head = contribution[:contribution.find(_FIELD)] if _FIELD in contribution else contribution
    _, sep, version = head.partition(_VERSION)
    return int(version) if sep else root


def seen_hour(tweet_id: int) -> int:
    return snowflake_ms(tweet_id) // 3_600_000 * 3600


def chain_members(tweet: Tweet) -> tuple[int, list[str]]:
    """The minute (of the chain's root) and the members (dimension letter + value) a version adds
    to; with the minute they are the contribution a delete later subtracts exactly."""
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


def decode(contribution: str, hour: int) -> tuple[int, list[str]]:
    """(minute, members) of a stored contribution: minutes after `hour`, then the members."""
    head, *members = contribution.split(_FIELD)
    if _ITEM in contribution:  # the layout before 2026-11-26: epoch minute, "dim<ITEM>value"
        return int(head), [CODE[dim] + value for dim, value in
                           (member.split(_ITEM, 1) for member in members)]
    return hour + int(head.partition(_VERSION)[0]) * 60, members
