"""The AnalyticsService core, free of any transport: cache, validate, plan, read each part, merge,
answer. Both transports call it with the request's protobuf wire bytes and get the answer's: the
grpcio server (query_service.server) and the Connect application (query_service.connect_app, which
turns JSON into wire bytes and back, see query_service.json_answers). Failures are QueryError with
a transport-neutral Status (query_service.errors) that each transport maps to its own codes.

A request is first looked up in the result cache by its wire bytes (valid requests only ever get
there, so a hit needs no parsing or validation; the cache's in-process front is consulted before
the core is even entered, see interceptors.cache_shortcut and connect_app). On a miss, identical concurrent
requests are collapsed into one computation, which validates the request, plans it
(query_service.planner), reads the hot parts from Redis and the rest from ClickHouse concurrently,
merges the numbers and caches the answer with a TTL tied to the range's freshness.

When Redis fails the question is re-planned without it and answered from ClickHouse; when the
stores the plan needs are all down the answer is UNAVAILABLE with the reasons. When Redis lost
data and its hot tier is being rebuilt, the planner answers the part of the hot horizon it does
not hold from ClickHouse, and every hot read verifies that no hole appeared since the question
was planned (query_service.hot_tier).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from query_service import marts, planner, validation
from query_service.cache import Breaker, ResultCache, SingleFlight, ttl_for
from query_service.errors import QueryError, Status
from query_service.hot_store import (
    HotStore,
    HotStoreUnavailable,
    HotTierChanged,
    VolumeRow,
    connect,
)
from query_service.hot_tier import HotTierMonitor
from query_service.marts import ClickHouseStore, ClickHouseUnavailable, MissingRelation, Query
from query_service.metrics import current_request
from query_service.pipeline_status import PipelineProbe
from query_service.planner import DAY, Capability, Plan, Source, floor_to
from query_service.validation import InvalidArgument, TimeRange
from tweetflow.settings import Settings
from tweetflow.v1 import analytics_pb2 as pb

log = logging.getLogger(__name__)

SOURCE_ENUM = {Source.HOT: pb.ANSWER_SOURCE_HOT, Source.MART: pb.ANSWER_SOURCE_MART,
               Source.RAW: pb.ANSWER_SOURCE_RAW, Source.CACHE: pb.ANSWER_SOURCE_CACHE,
               Source.MIXED: pb.ANSWER_SOURCE_MIXED}
DEFAULT_TIMEOUT = 30.0  # seconds, for calls that set no deadline


class Unavailable(Exception):
    """None of the stores that could answer did."""


@dataclass(frozen=True)
class Answer:
    payload: bytes  # the serialized response
    origin: Source


@dataclass
class Reads:
    """What the stores returned for one plan."""

    hot: Any
    rows: list[tuple] | None
    source: Source


class Backends:
    """The stores the service reads, built once per process (never per request)."""

    def __init__(self, settings: Settings, *, clickhouse: ClickHouseStore | None = None,
                 redis_client: Any = None) -> None:
        self.settings = settings
        self.redis = redis_client or connect(settings)
        self.breaker = Breaker()
        self.hot = HotStore(self.redis, settings.redis_prefix, settings.hot_shard_count)
        self.cache = ResultCache(self.redis, settings.redis_prefix, self.breaker)
        self.clickhouse = clickhouse or ClickHouseStore(settings)
        self.pipeline = PipelineProbe(settings, self.hot)
        self.tier = HotTierMonitor(settings, self.redis)  # whether Redis holds a whole history

    async def close(self) -> None:
        await self.redis.aclose()
        self.clickhouse.close()
        self.pipeline.close()
        self.tier.close()


Compute = Callable[[Any, float, float], Awaitable[tuple[Message, int]]]
# A top-K query of query_service.marts: (parts, limit, *, platform) -> Query.
TopQuery = Callable[..., Query]


class AnalyticsService:
    """Answers each method's request wire bytes with the response's wire bytes: a cache hit then
    needs no protobuf parsing or serializing at all."""

    def __init__(self, backends: Backends, *, clock: Callable[[], float] = time.time) -> None:
        self.b = backends
        self.clock = clock
        self.flights = SingleFlight()
        self.horizon = backends.settings.hot_horizon_hours * 3600
        # The fresh in-process answer to (method, request bytes), or None; no I/O, so the
        # transports answer such hits before entering the core (interceptors.cache_shortcut).
        self.cached: Callable[[str, bytes], bytes | None] = backends.cache.local
        self._methods: dict[str, tuple[type[Message], Compute]] = {
            "TrendingHashtags": (pb.TrendingHashtagsRequest, self._trending),
            "TimeSeries": (pb.TimeSeriesRequest, self._time_series),
            "TopMentions": (pb.TopMentionsRequest, self._top_mentions),
            "TopDomains": (pb.TopDomainsRequest, self._top_domains),
            "TopAuthors": (pb.TopAuthorsRequest, self._top_authors),
            "TweetVolume": (pb.TweetVolumeRequest, self._volume),
            "UserActivity": (pb.UserActivityRequest, self._user_activity),
            "EngagementSummary": (pb.EngagementSummaryRequest, self._engagement),
            "PipelineStatus": (pb.PipelineStatusRequest, self.b.pipeline.status),
        }

    async def answer(self, method: str, raw: bytes, timeout: float | None) -> bytes:
        """The serialized response to `method`'s serialized request, within `timeout` seconds
        (None: DEFAULT_TIMEOUT); QueryError when there is none."""
        info = current_request()
        generation = await self.b.clickhouse.generation(self.horizon)
        cached = await self.b.cache.get(method, raw, generation)  # in-process hits rarely get here
        if cached is not None:
            info.path = "cache"
            return cached
        timeout = DEFAULT_TIMEOUT if timeout is None else min(timeout, DEFAULT_TIMEOUT)
        deadline = time.monotonic() + timeout
        try:
            answer = await self.flights.run(
                (method, raw), lambda: self._compute(method, raw, deadline, generation), timeout)
        except QueryError:
            raise
        except InvalidArgument as exc:
            raise QueryError(Status.INVALID_ARGUMENT, str(exc)) from exc
        except Unavailable as exc:
            raise QueryError(Status.UNAVAILABLE, str(exc)) from exc
        except MissingRelation as exc:
            raise QueryError(Status.FAILED_PRECONDITION,
                             f"{exc}; build the marts and stg_tweets with dbt first") from exc
        except TimeoutError as exc:
            raise QueryError(Status.DEADLINE_EXCEEDED, f"no answer within {timeout:.3f}s") from exc
        except Exception as exc:  # a bug or an unexpected store error: logged, reported as such
            log.exception("%s failed", method)
            raise QueryError(Status.INTERNAL, f"internal error ({type(exc).__name__})") from exc
        info.path = answer.origin.value
        return answer.payload

    async def _compute(self, method: str, raw: bytes, deadline: float, generation: int) -> Answer:
        request_type, compute = self._methods[method]
        try:
            request = request_type.FromString(raw)
        except DecodeError as exc:
            raise InvalidArgument(f"the request is not a valid {request_type.__name__}") from exc
        now = self.clock()
        response, end = await compute(request, now, deadline)
        origin = response.source
        response.origin = origin
        response.as_of.FromNanoseconds(int(now * 1e9))
        payload = response.SerializeToString()
        response.source = pb.ANSWER_SOURCE_CACHE
        await self.b.cache.put(method, raw, response.SerializeToString(), ttl_for(end, now),
                               generation)
        return Answer(payload, Source[pb.AnswerSource.Name(origin).removeprefix("ANSWER_SOURCE_")])

    async def _run(self, capability: Capability, rng: TimeRange, max_grain: int | None,
                   now: float, deadline: float, hot_read: Callable[[Plan], Awaitable[Any]] | None,
                   ch_query: Callable[[Plan], Query]) -> Reads:
        """Plan the range, read its parts, and fall back to ClickHouse alone if Redis fails."""
        redis_up = self.b.breaker.up and bool(capability.hot_grains)
        tier = await self.b.tier.current() if redis_up else None
        plan = await self._plan(capability, rng, max_grain, now, deadline, redis_up,
                                tier.complete_from if tier else None)
        if tier is not None:
            try:
                with self.b.tier.guarding(tier):  # a hole appearing meanwhile is never answered
                    return await self._read(plan, hot_read, ch_query, deadline)
            except HotTierChanged as exc:
                self.b.tier.changed()
                log.info("the hot tier changed while answering (%s); answering from ClickHouse",
                         exc)
            except HotStoreUnavailable as exc:
                self.b.breaker.trip(str(exc))
                log.warning("Redis is unavailable (%s); answering from ClickHouse", exc)
            except ClickHouseUnavailable as exc:
                raise Unavailable(f"ClickHouse is unreachable ({exc}); it holds the part of the "
                                  "range Redis cannot answer (older than the hot horizon, not "
                                  "aligned to a whole minute, or while Redis's hot tier is "
                                  "rebuilt)") from exc
            plan = await self._plan(capability, rng, max_grain, now, deadline, False)
        try:
            return await self._read(plan, None, ch_query, deadline)
        except ClickHouseUnavailable as exc:
            why = (f"Redis is unavailable ({self.b.breaker.last_error})" if capability.hot_grains
                   else "Redis does not hold this question")
            raise Unavailable(f"{why} and ClickHouse is unreachable ({exc})") from exc

    async def _plan(self, capability: Capability, rng: TimeRange, max_grain: int | None,
                    now: float, deadline: float, hot_available: bool,
                    hot_complete_from: int | None = None) -> Plan:
        def make(through: Mapping[int, planner.Coverage | None] | None) -> Plan:
            return planner.plan(capability, rng.start, rng.end, now=int(now),
                                hot_horizon_seconds=self.horizon, max_grain=max_grain,
                                hot_available=hot_available, marts_through=through,
                                hot_complete_from=hot_complete_from)

        plan = make(None)
        if not plan.clickhouse_parts:
            return plan
        try:
            through = await self.b.clickhouse.marts_through(capability, _left(deadline))
        except ClickHouseUnavailable:
            through = {}  # reading the raw parts fails too and says why
        return make(through)

    async def _read(self, plan: Plan, hot_read: Callable[[Plan], Awaitable[Any]] | None,
                    ch_query: Callable[[Plan], Query], deadline: float) -> Reads:
        if not plan.clickhouse_parts:
            hot = await hot_read(plan) if plan.hot_parts and hot_read else None
            return Reads(hot, None, plan.source)
        rows_task = self.b.clickhouse.rows(ch_query(plan), _left(deadline))
        if not plan.hot_parts or hot_read is None:
            return Reads(None, await rows_task, plan.source)
        hot, rows = await asyncio.gather(hot_read(plan), rows_task)
        return Reads(hot, rows, plan.source)

    # --- one function per question ------------------------------------------------------------

    async def _trending(self, request: pb.TrendingHashtagsRequest, now: float,
                        deadline: float) -> tuple[Message, int]:
        window, limit = validation.window(request), validation.limit(request.limit)
        platform = validation.platform(request.platform)
        end = int(now) + 1  # through the current second
        start = floor_to(int(now), 60) + 60 - window
        top, source = await self._top(planner.ENTITIES, "hashtag", TimeRange(start, end), limit,
                                      now, deadline, partial(marts.top_entities, "hashtag"),
                                      platform)
        members = [m for m, _ in top]
        baseline, base_source = await self._scores(members, TimeRange(start - DAY, start), now,
                                                   deadline, platform)
        windows_per_day = DAY / window
        response = pb.TrendingHashtagsResponse(source=SOURCE_ENUM[_combine(source, base_source)],
                                               start=_ts(start), end=_ts(end))
        for hashtag, count in top:
            avg = baseline.get(hashtag, 0) / windows_per_day
            response.hashtags.add(hashtag=hashtag, count=count, baseline_avg=avg,
                                  velocity=count / max(avg, 1.0))
        return response, end

    async def _scores(self, members: list[str], rng: TimeRange, now: float, deadline: float,
                      platform: str | None) -> tuple[dict[str, int], Source | None]:
        """Each hashtag's Tweets over the range (for trending baselines)."""
        if not members:
            return {}, None
        reads = await self._run(
            planner.ENTITIES, rng, None, now, deadline,
            lambda plan: self.b.hot.scores("hashtag", members, plan.hot_parts,
                                           platforms=validation.hot_platforms(platform)),
            lambda plan: marts.entity_scores("hashtag", members, plan.clickhouse_parts,
                                             platform=platform))
        totals: Counter[str] = Counter(reads.hot or {})
        for member, count in reads.rows or ():
            totals[member] += count
        return dict(totals), reads.source

    async def _top(self, capability: Capability, dim: str, rng: TimeRange, limit: int,
                   now: float, deadline: float, query: TopQuery, platform: str | None,
                   ) -> tuple[list[tuple[str, int]], Source]:
        """The top `limit` members of a dimension. When the range is split between Redis and
        ClickHouse each side returns every member, so the merged ranking is exact."""

        def each_limit(plan: Plan) -> int | None:
            return None if plan.hot_parts and plan.clickhouse_parts else limit

        reads = await self._run(
            capability, rng, None, now, deadline,
            lambda plan: self.b.hot.top(dim, plan.hot_parts, each_limit(plan),
                                        platforms=validation.hot_platforms(platform)),
            lambda plan: query(plan.clickhouse_parts, each_limit(plan), platform=platform))
        if reads.rows is None:
            return reads.hot or [], reads.source
        if reads.hot is None:
            return [(k, int(n)) for k, n in reads.rows], reads.source
        counts: Counter[str] = Counter(dict(reads.hot))
        for member, count in reads.rows:
            counts[member] += count
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return ranked, reads.source

    async def _top_answer(self, request: Any, now: float, deadline: float, response: Message,
                          capability: Capability, dim: str,
                          query: TopQuery) -> tuple[Message, int]:
        rng = validation.time_range(request, now)
        limit = validation.limit(request.limit)
        platform = validation.platform(request.platform)
        top, source = await self._top(capability, dim, rng, limit, now, deadline, query,
                                      platform)
        response.source = SOURCE_ENUM[source]
        for entity, count in top:
            response.entities.add(entity=entity, count=count)
        return response, rng.end

    async def _top_mentions(self, request: pb.TopMentionsRequest, now: float,
                            deadline: float) -> tuple[Message, int]:
        return await self._top_answer(
            request, now, deadline, pb.TopMentionsResponse(), planner.ENTITIES, "mention",
            partial(marts.top_entities, "mention"))

    async def _top_domains(self, request: pb.TopDomainsRequest, now: float,
                           deadline: float) -> tuple[Message, int]:
        return await self._top_answer(
            request, now, deadline, pb.TopDomainsResponse(), planner.ENTITIES, "domain",
            partial(marts.top_entities, "domain"))

    async def _top_authors(self, request: pb.TopAuthorsRequest, now: float,
                           deadline: float) -> tuple[Message, int]:
        return await self._top_answer(request, now, deadline, pb.TopAuthorsResponse(),
                                      planner.AUTHORS, "author", marts.top_authors)

    async def _time_series(self, request: pb.TimeSeriesRequest, now: float,
                           deadline: float) -> tuple[Message, int]:
        entity_type = validation.entity_type(request.entity_type)
        entity = validation.entity(request.entity)
        rng = validation.time_range(request, now)
        grain = validation.granularity(request.granularity, rng)
        platform = validation.platform(request.platform)
        reads = await self._run(
            planner.ENTITIES, rng, grain, now, deadline,
            lambda plan: self.b.hot.series(entity_type, entity, plan.hot_parts,
                                           platforms=validation.hot_platforms(platform)),
            lambda plan: marts.entity_series(entity_type, entity, plan.clickhouse_parts, grain,
                                             platform=platform))
        series: defaultdict[int, int] = defaultdict(int)
        for bucket, count in (reads.hot or {}).items():
            series[floor_to(bucket, grain)] += count
        for bucket, count in reads.rows or ():
            series[int(bucket)] += int(count)
        response = pb.TimeSeriesResponse(source=SOURCE_ENUM[reads.source], entity=entity,
                                         granularity=validation.GRAIN_ENUM[grain])
        total = 0
        for bucket in _buckets(rng, grain):
            count = series.get(bucket, 0)
            total += count
            response.points.add(bucket=_ts(bucket), count=count)
        response.total = total
        return response, rng.end

    async def _volume(self, request: pb.TweetVolumeRequest, now: float,
                      deadline: float) -> tuple[Message, int]:
        rng = validation.time_range(request, now)
        grain = validation.granularity(request.granularity, rng)
        platform = validation.platform(request.platform)
        reads = await self._run(
            planner.VOLUME, rng, grain, now, deadline,
            lambda plan: self.b.hot.volume(plan.hot_parts,
                                           platforms=validation.hot_platforms(platform)),
            lambda plan: marts.volume(plan.clickhouse_parts, grain, platform=platform))
        buckets: defaultdict[int, VolumeRow] = defaultdict(VolumeRow)
        for bucket, row in (reads.hot or {}).items():
            _add_volume(buckets[floor_to(bucket, grain)], row.count, row.by_lang, row.by_kind)
        for bucket, lang, kind, count in reads.rows or ():
            _add_volume(buckets[int(bucket)], int(count), {lang: int(count)}, {kind: int(count)})
        response = pb.TweetVolumeResponse(source=SOURCE_ENUM[reads.source],
                                          granularity=validation.GRAIN_ENUM[grain])
        total = VolumeRow()
        for bucket in _buckets(rng, grain):
            row = buckets.get(bucket) or VolumeRow()
            _add_volume(total, row.count, row.by_lang, row.by_kind)
            response.buckets.add(bucket=_ts(bucket), count=row.count, by_lang=row.by_lang,
                                 by_kind=row.by_kind)
        response.total = total.count
        response.by_lang.update(total.by_lang)
        response.by_kind.update(total.by_kind)
        return response, rng.end

    async def _user_activity(self, request: pb.UserActivityRequest, now: float,
                             deadline: float) -> tuple[Message, int]:
        handle, author_id = validation.user(request)
        rng = validation.time_range(request, now)
        grain = validation.granularity(request.granularity, rng, default=DAY,
                                       allowed=(planner.HOUR, DAY))
        platform = validation.platform(request.platform)
        reads = await self._run(
            planner.USER_ACTIVITY, rng, grain, now, deadline, None,
            lambda plan: marts.user_activity(plan.clickhouse_parts, grain, handle=handle,
                                             author_id=author_id, platform=platform))
        by_bucket = {int(row[0]): [int(v) for v in row[1:]] for row in reads.rows or ()}
        response = pb.UserActivityResponse(source=SOURCE_ENUM[reads.source],
                                           granularity=validation.GRAIN_ENUM[grain])
        totals = [0] * 5
        for bucket in _buckets(rng, grain):
            values = by_bucket.get(bucket, [0] * 5)
            totals = [a + b for a, b in zip(totals, values, strict=True)]
            response.buckets.add(bucket=_ts(bucket), counts=_activity(values))
        response.totals.CopyFrom(_activity(totals))
        return response, rng.end

    async def _engagement(self, request: pb.EngagementSummaryRequest, now: float,
                          deadline: float) -> tuple[Message, int]:
        rng = validation.time_range(request, now)
        platform = validation.platform(request.platform)
        reads = await self._run(planner.ENGAGEMENT, rng, None, now, deadline, None,
                                lambda plan: marts.engagement(plan.clickhouse_parts,
                                                              platform=platform))
        values = [int(v or 0) for v in (reads.rows[0] if reads.rows else [0] * 8)]
        response = pb.EngagementSummaryResponse(
            source=SOURCE_ENUM[reads.source],
            **dict(zip(marts.ENGAGEMENT_COLUMNS, values, strict=True)))
        return response, rng.end


def _left(deadline: float) -> float:
    """Seconds left before the deadline (never below a millisecond)."""
    return max(0.001, deadline - time.monotonic())


def _combine(a: Source, b: Source | None) -> Source:
    return a if b is None or a == b else Source.MIXED


def _ts(epoch_seconds: int) -> Timestamp:
    return Timestamp(seconds=epoch_seconds)


def _buckets(rng: TimeRange, grain: int) -> range:
    """Every bucket overlapping [start, end)."""
    return range(floor_to(rng.start, grain), rng.end, grain)


def _add_volume(row: VolumeRow, count: int, by_lang: dict[str, int],
                by_kind: dict[str, int]) -> None:
    row.count += count
    for lang, n in by_lang.items():
        row.by_lang[lang] = row.by_lang.get(lang, 0) + n
    for kind, n in by_kind.items():
        row.by_kind[kind] = row.by_kind.get(kind, 0) + n


def _activity(values: list[int]) -> pb.ActivityCounts:
    return pb.ActivityCounts(count_tweets=values[0], count_originals=values[1],
                             count_retweets=values[2], count_replies=values[3],
                             count_quotes=values[4])
