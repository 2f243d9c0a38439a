"""Which keys a hot read sums over a range of buckets, with which signs and bounds, and the two
per-shard scripts that follow that plan (query_service.hot_store runs them on every shard).

Why a plan: a shard's sum over an hour of minute buckets reads ~60 keys per member, and a Lua
ZMSCORE look-up costs ~1 µs, so the keys read are the cost of a hot question. Two identities of
the layout (tweetflow/hot_keys.py: each event counts in its minute's key and its hour's key, in
the same script; the hour's key expires after its minutes') cut them:
- an hour key is the exact sum of its 60 minute keys, so most of an hour is read as the hour
  minus the other minutes (at most 30 keys for any part of an hour, where it was up to 59);
- an hour key is at least the sum of any of its minutes, so it bounds them in the threshold
  algorithm of a shard's top (SHARD_TOP): the floor is (K-th sum) / (number of bounds), and over
  an hour of minute keys, each its own bound, that floor reached the long tail of count-1 members.
Measured on a 6-shard cluster (`python -m bench.hot_cluster_bench`, 1 h trending question, top 10
plus its 24 h baseline): p50 / p99 34.9 / 51.4 ms with every minute read and bounding itself;
with hour bounds 5.35 / 7.67 ms for a window from minute 39 of the hour, but 21.6 / 34.1 ms from
minute 3 (57 minutes read per member); with this plan 4.08 / 5.23 ms from minute 17, and 7.09 /
10.92 and 7.48 / 12.49 ms from minute 32, near the most minute keys a window reads
(docs/performance.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from query_service.planner import HOUR, MINUTE

Cell = tuple[str, int, str]  # grain letter ("m", "h"), bucket start, platform
# Minutes of one hour from which its hour key bounds them in a top (fewer: their own small tails
# are cheaper to read than the hour's).
BOUNDED_MINUTES = 15


@dataclass(frozen=True)
class SumPlan:
    """A sum over cells: `added` minus `subtracted`. `bound_of[i]`: the 1-based index, in
    added + subtracted + bounds, of the key bounding added[i] (itself, or its hour's key)."""

    added: tuple[Cell, ...]
    subtracted: tuple[Cell, ...] = ()
    bounds: tuple[Cell, ...] = ()
    bound_of: tuple[int, ...] = ()

    def cells(self) -> list[Cell]:
        """Every cell, in the scripts' KEYS order."""
        return [*self.added, *self.subtracted, *self.bounds]

    def top_args(self) -> list[int]:
        """SHARD_TOP's ARGV after its mode."""
        return [len(self.added), len(self.subtracted), *self.bound_of]


def plan(cells: Sequence[Cell], *, bounded: bool = True) -> SumPlan:
    """The plan of a sum over `cells` (no two overlapping): an hour's minutes read for more than
    half of it become the hour minus its other minutes; with `bounded`, an hour's minutes read
    for BOUNDED_MINUTES or more are bounded by the hour's key."""
    added: list[tuple[Cell, Cell]] = []  # (a cell, its bound)
    subtracted: list[Cell] = []
    bounds: list[Cell] = []
    minutes_of: dict[tuple[int, str], set[int]] = defaultdict(set)
    for cell in cells:
        grain, bucket, platform = cell
        if grain == "m":
            minutes_of[(bucket - bucket % HOUR, platform)].add(bucket)
        else:
            added.append((cell, cell))
    for (hour, platform), minutes in minutes_of.items():
        hour_cell = ("h", hour, platform)
        if len(minutes) > HOUR // MINUTE // 2:
            added.append((hour_cell, hour_cell))
            subtracted.extend(("m", m, platform) for m in range(hour, hour + HOUR, MINUTE)
                              if m not in minutes)
            continue
        by_hour = bounded and len(minutes) >= BOUNDED_MINUTES
        if by_hour:
            bounds.append(hour_cell)
        for m in sorted(minutes):
            cell = ("m", m, platform)
            added.append((cell, hour_cell if by_hour else cell))
    index = {cell: i + 1 for i, cell in enumerate([c for c, _ in added] + subtracted + bounds)}
    return SumPlan(tuple(c for c, _ in added), tuple(subtracted), tuple(bounds),
                   tuple(index[bound] for _, bound in added))


def shard_keys(plan_: SumPlan, key_of: Callable[[Cell, int], str], shards: int) -> list[list[str]]:
    """Per shard, the plan's keys in KEYS order."""
    cells = plan_.cells()
    return [[key_of(cell, n) for cell in cells] for n in range(shards)]


# KEYS: one shard's keys of a SumPlan (added, subtracted, bounds); those missing hold nothing and
# are left out (a platform without data costs one EXISTS a key and does not lower the floor).
# ARGV: a mode, P (added keys), S (subtracted keys), each added key's bound (SumPlan.bound_of;
# a missing bound: the key bounds itself), then the mode's arguments; replies member, sum, ...
# A member's sum is its added counts minus its subtracted ones.
# - top K: the members whose sum is at least the K-th best (so the shard's top K, ties included),
#   found with Fagin's threshold algorithm over the n bounds: their own top K, summed exactly,
#   give a K-th sum tau that is at most the true one; a member summing tau or more counts tau / n
#   or more in some bound, so those members, summed exactly, hold the answer.
# - atleast T: every member whose sum is at least T (the same bound: T / n in some bound).
# - sums m...: the sums of these members (absent: left out).
SHARD_TOP = """
local mode, P, S = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local present = {}
for i = 1, #KEYS do present[i] = redis.call('EXISTS', KEYS[i]) == 1 end
local keys, signs, bounds, bounding = {}, {}, {}, {}
for i = 1, P do
  if present[i] then
    keys[#keys + 1] = KEYS[i]; signs[#keys] = 1
    local b = tonumber(ARGV[3 + i])
    if not present[b] then b = i end
    if not bounding[b] then bounding[b] = true; bounds[#bounds + 1] = KEYS[b] end
  end
end
for i = P + 1, P + S do
  if present[i] then keys[#keys + 1] = KEYS[i]; signs[#keys] = -1 end
end
local n, first = #bounds, 4 + P
if n == 0 then return {} end
local function sums(members)
  local total = {}
  for i = 1, #members do total[i] = 0 end
  for k, key in ipairs(keys) do
    local sign = signs[k]
    for j = 1, #members, 500 do
      local got = redis.call('ZMSCORE', key, unpack(members, j, math.min(j + 499, #members)))
      for i = 1, #got do
        if got[i] then total[j + i - 1] = total[j + i - 1] + sign * tonumber(got[i]) end
      end
    end
  end
  return total
end
local function union(lists, seen, out)
  for _, list in ipairs(lists) do
    for _, m in ipairs(list) do
      if not seen[m] then seen[m] = true; out[#out + 1] = m end
    end
  end
  return out
end
local function above(floor, seen, out)  -- members counting `floor` or more in some bound
  local lists = {}
  for _, key in ipairs(bounds) do
    lists[#lists + 1] = redis.call('ZREVRANGEBYSCORE', key, '+inf', floor)
  end
  return union(lists, seen, out)
end
local function reply(members, at_least)
  local total, out = sums(members), {}
  for i = 1, #members do
    if total[i] > 0 and total[i] >= at_least then
      out[#out + 1] = members[i]; out[#out + 1] = total[i]
    end
  end
  return out
end
if mode == 'sums' then
  local members = {}
  for i = first, #ARGV do members[#members + 1] = ARGV[i] end
  return reply(members, 0)
end
local seen, members = {}, {}
local at_least = tonumber(ARGV[first])
if mode == 'top' then
  local k, lists = at_least, {}
  for _, key in ipairs(bounds) do lists[#lists + 1] = redis.call('ZREVRANGE', key, 0, k - 1) end
  union(lists, seen, members)
  local total = sums(members)
  table.sort(total, function(a, b) return a > b end)
  at_least = total[k] or 0
end
above(math.max(at_least / n, 1), seen, members)
return reply(members, at_least)
"""

# KEYS: one shard's keys of a SumPlan, added then subtracted. ARGV: S (subtracted keys), then
# members. Each member's sum: its added counts minus its subtracted ones.
SUM_SCORES = """
local sums, first = {}, #KEYS - tonumber(ARGV[1])
for i = 2, #ARGV do sums[i - 1] = 0 end
for k, key in ipairs(KEYS) do
  local sign = k <= first and 1 or -1
  local scores = redis.call('ZMSCORE', key, unpack(ARGV, 2))
  for i = 1, #scores do if scores[i] then sums[i] = sums[i] + sign * tonumber(scores[i]) end end
end
return sums
"""
