"""The exact top K over shards (TPUT, query_service/top_merge.py) equals the top K of the summed
counts, ties ranked by member, on random shards skewed every way (brute force as the oracle)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from query_service import top_merge


def _shards(rng: random.Random, shards: int, members: int) -> list[dict[str, int]]:
    vocabulary = [f"m{i:03d}" for i in range(members)]
    out = []
    for _ in range(shards):
        skew = rng.choice([0.5, 1.0, 2.0])
        chosen = rng.sample(vocabulary, rng.randint(0, members))
        out.append({m: max(1, int(rng.paretovariate(skew) * rng.choice([1, 3, 10])))
                    for m in chosen})
    return out


def _tput(shards: list[dict[str, int]], k: int,
          depth: int | None = None) -> tuple[list[tuple[str, int]], int]:
    """TPUT over in-memory shards (each shard's top `depth` first), reading them as Redis would;
    (answer, members read)."""
    read = 0

    def ordered(counts: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    async def phase(fetch: top_merge.Fetch) -> list[dict[str, int]]:
        nonlocal read
        if fetch.at_least is not None:
            got = [{m: n for m, n in ordered(c) if n >= fetch.at_least} for c in shards]
        else:
            got = [{m: c[m] for m in wanted if m in c}
                   for c, wanted in zip(shards, fetch.members, strict=True)]
        read += sum(map(len, got))
        return got

    tops = [dict(ordered(c)[:depth or k]) for c in shards]
    read += sum(map(len, tops))
    return asyncio.run(top_merge.tput(tops, k, phase, depth)), read


@pytest.mark.parametrize("seed", range(300))
def test_tput_is_exact(seed: int) -> None:
    rng = random.Random(seed)
    shards = _shards(rng, rng.randint(2, 8), rng.randint(1, 60))
    k = rng.randint(1, 15)
    totals: Counter[str] = Counter()
    for counts in shards:
        totals.update(counts)
    expected = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    assert _tput(shards, k)[0] == expected
    assert _tput(shards, k, k * rng.choice([2, 3, 5]))[0] == expected


def test_tput_reads_far_fewer_members_than_the_shards_hold() -> None:
    rng = random.Random(7)
    vocabulary = [f"tag{i}" for i in range(3000)]
    weights = [1 / (i + 1) for i in range(3000)]  # Zipf, as hashtags are
    shards = [Counter(rng.choices(vocabulary, weights, k=20_000)) for _ in range(6)]
    for depth in (10, 30):
        answer, read = _tput([dict(c) for c in shards], 10, depth)
        assert [m for m, _ in answer][:3] == ["tag0", "tag1", "tag2"]
        assert read < sum(map(len, shards)) / 10
