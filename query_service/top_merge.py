"""The exact top K of counts spread over shards, without reading every member of every shard.

Why: in Redis Cluster mode each shard counts its own Tweets (tweetflow/hot_keys.py), so a member's
count is the sum of its shards' counts, and an hour of hashtags holds thousands of members per
shard. TPUT (Cao and Wang, "Efficient top-K query calculation in distributed networks", PODC 2004)
answers exactly in three round trips that read little more than the K winners:
1. each shard's own top K: the K-th best partial sum, tau1, is at most the true K-th best count;
2. every member whose count on some shard is at least tau1 / shards: a member seen nowhere counts
   less than tau1 in total (each shard < tau1 / shards), so it cannot reach the top K; for the
   others, lower bounds (what was seen) and upper bounds (plus what an unseen shard may hold);
3. the exact counts, on the shards not seen yet, of the members whose upper bound reaches the K-th
   best lower bound (ties included: they are ranked by member).
Counts are non-negative integers (a chain's counts all sit on its home shard).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fetch:
    """What one round trip reads from every shard: the members counting at least `at_least`, or
    (when it is None) the counts of `members[shard]`."""

    at_least: float | None = None
    members: tuple[list[str], ...] = ()


Phase = Callable[[Fetch], Awaitable[list[dict[str, int]]]]


def ranked(totals: dict[str, int], limit: int | None) -> list[tuple[str, int]]:
    """Count descending, then member ascending (byte order, as ClickHouse sorts strings)."""
    order = sorted(((m, n) for m, n in totals.items() if n > 0),
                   key=lambda kv: (-kv[1], kv[0].encode()))
    return order if limit is None else order[:limit]


def exact(shards: list[dict[str, int]], limit: int | None) -> list[tuple[str, int]]:
    """The top of shards whose every member was read (or a single shard's own top)."""
    totals: Counter[str] = Counter()
    for counts in shards:
        totals.update(counts)
    return ranked(dict(totals), limit)


async def tput(tops: list[dict[str, int]], k: int, phase: Phase,
               depth: int | None = None) -> list[tuple[str, int]]:
    """The exact top `k` over shards whose own top `depth` (>= k; default k) are `tops`; `phase`
    reads the shards.

    First the threshold algorithm's stopping rule: a member no shard returned counts at most
    each shard's smallest count returned; if those bounds sum below the K-th best lower bound,
    no such member can enter, and only the candidates' missing counts are read (one round trip,
    none when every candidate is known). With `depth` well above k that is the usual case; else
    TPUT's second and third round trips follow.
    """
    depth = depth or k
    known = [dict(top) for top in tops]
    complete = [len(top) < depth for top in tops]  # fewer: the shard has no other member
    floors = [0 if done or not top else min(top.values())
              for top, done in zip(tops, complete, strict=True)]
    lower = dict(exact(known, None))
    tau = _kth(ranked(lower, None), k)
    if sum(floors) < tau:
        return await _resolve(known, lower, floors, tau, k, phase)
    tau1 = _kth(exact(known, None), k)
    threshold = tau1 / len(tops)
    for shard, counts in enumerate(await phase(Fetch(at_least=max(threshold, 1)))):
        known[shard].update(counts)
    unseen_at_most = 0 if threshold <= 1 else math.ceil(threshold) - 1
    lower = dict(exact(known, None))
    upper = {m: n + unseen_at_most * sum(1 for s, counts in enumerate(known)
                                         if m not in counts and not complete[s])
             for m, n in lower.items()}
    tau2 = _kth(ranked(lower, None), k)
    candidates = [m for m, bound in upper.items() if bound >= tau2]
    missing = tuple([m for m in candidates if m not in counts] if unseen_at_most and not done
                    else [] for counts, done in zip(known, complete, strict=True))
    if any(missing):
        for shard, counts in enumerate(await phase(Fetch(members=missing))):
            known[shard].update(counts)
    return ranked({m: sum(counts.get(m, 0) for counts in known) for m in candidates}, k)


async def _resolve(known: list[dict[str, int]], lower: dict[str, int], floors: list[int],
                   tau: int, k: int, phase: Phase) -> list[tuple[str, int]]:
    """Rank the members whose upper bound reaches `tau`, after reading their missing counts."""
    candidates = [m for m, n in lower.items()
                  if n + sum(f for counts, f in zip(known, floors, strict=True)
                             if m not in counts) >= tau]
    missing = tuple([m for m in candidates if m not in counts] if floor else []
                    for counts, floor in zip(known, floors, strict=True))
    if any(missing):
        for shard, counts in enumerate(await phase(Fetch(members=missing))):
            known[shard].update(counts)
    return ranked({m: sum(counts.get(m, 0) for counts in known) for m in candidates}, k)


def _kth(order: list[tuple[str, int]], k: int) -> int:
    return order[k - 1][1] if len(order) >= k else 0
