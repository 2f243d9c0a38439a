"""Which Kafka partition a keyed message lands in: Kafka's default partitioner (the Java client's,
and librdkafka's `murmur2_random`, which tweetflow's producer uses), `murmur2(key) % partitions`.

Why here: in Redis Cluster mode the hot tier keeps the dedup state of an edit chain beside the
counters of the partition its root's messages land in (tweetflow/hot_keys.py), so the consumers
must compute that partition for ids they did not receive keyed (an edit names its root; a link
names an earlier version). Hand-written because neither confluent-kafka nor a maintained Python
package exposes Kafka's murmur2 (`mmh3` is MurmurHash3, a different function). It costs ~3.8 µs
a key in pure Python, so the consumers use it only where the arriving partition cannot answer.
"""

from __future__ import annotations

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (seed 0x9747b28c), as an unsigned 32-bit value."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length & ~3
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra:
        if extra == 3:
            h ^= data[whole + 2] << 16
        if extra >= 2:
            h ^= data[whole + 1] << 8
        h = ((h ^ data[whole]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner assigns a message with this key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def id_key(tweet_id: int) -> bytes:
    """A Tweet's message key: its id in decimal ASCII (data contract, streaming/producer.py)."""
    return b"%d" % tweet_id
