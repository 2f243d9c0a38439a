"""The hot tier's shard tags (tweetflow.hot_keys.shard_tag): one Redis keeps `{s0}`, and the shards
of a cluster spread evenly over the equal slot ranges `redis-cli --cluster create` gives."""

from __future__ import annotations

import pytest
from redis.crc import key_slot  # redis-py's own slot function, as the cluster client computes it

from tweetflow.hot_keys import dimension_key, shard_tag


def _master_of(slot: int, masters: int) -> int:
    """The master holding `slot` when `masters` masters hold equal contiguous ranges."""
    return min(slot * masters // 16384, masters - 1)


def test_one_redis_keeps_its_key_names() -> None:
    assert shard_tag(0) == "{s0}"
    assert dimension_key("tf", "hashtag", "h", 3600) == "tf:{s0}:z:hashtag:h:3600"


@pytest.mark.parametrize("shards", [6, 12, 24, 48])
def test_shards_spread_evenly_over_equal_slot_ranges(shards: int) -> None:
    tags = [shard_tag(n) for n in range(shards)]
    assert len(set(tags)) == shards and all(t.startswith(f"{{s{n}") for n, t in enumerate(tags))
    slots = [key_slot(f"tf:{tag}:z:hashtag:m:60".encode()) for tag in tags]
    assert len(set(slots)) == shards
    for masters in (2, 3, 4, 6):
        if shards % masters == 0:
            held = [0] * masters
            for slot in slots:
                held[_master_of(slot, masters)] += 1
            assert held == [shards // masters] * masters, (masters, slots)
