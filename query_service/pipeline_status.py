"""PipelineStatus: how far behind the answers are, for dashboards (the page at `/` shows it).

The consumer group's lag comes from Kafka (streaming.offsets.group_lag: the topic's high
watermarks and the group's committed offsets, which the consumers commit only after every sink
flushed), one topic for every platform; the newest minute with Tweets (of the request's platform,
or any) from the hot aggregates in Redis. Kafka's client is
synchronous and a look-up opens two clients (~20-50 ms here), so it runs in a thread of its own;
the answer goes through the result cache like any other (2 s, a range touching the current
minute), so a dashboard polling every few seconds costs one look-up per cache lifetime.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from google.protobuf.timestamp_pb2 import Timestamp

from query_service import validation
from query_service.errors import QueryError, Status
from query_service.hot_store import HotStore, HotStoreUnavailable
from streaming.offsets import PartitionLag, group_lag
from tweetflow.settings import Settings
from tweetflow.v1 import analytics_pb2 as pb


class PipelineProbe:
    def __init__(self, settings: Settings, hot: HotStore) -> None:
        self.settings = settings
        self.hot = hot
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-lag")

    async def status(self, request: pb.PipelineStatusRequest, now: float,
                     deadline: float) -> tuple[pb.PipelineStatusResponse, int]:
        platforms = validation.hot_platforms(validation.platform(request.platform))
        lags = await self._lags(max(0.001, deadline - time.monotonic()))
        response = pb.PipelineStatusResponse(source=pb.ANSWER_SOURCE_HOT,
                                             consumer_lag=sum(max(0, p.lag) for p in lags))
        for p in lags:
            response.partitions.add(partition=p.partition, high=p.high, committed=p.committed,
                                    lag=max(0, p.lag))
        try:
            newest = await self.hot.newest_minute(now, platforms=platforms)
        except HotStoreUnavailable:
            newest = None  # the lag alone still says how far behind the consumers are
        if newest is not None:
            response.newest_minute.CopyFrom(Timestamp(seconds=newest))
        return response, int(now) + 1

    async def _lags(self, timeout: float) -> list[PartitionLag]:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._pool, group_lag, self.settings), timeout)
        except TimeoutError as exc:
            raise QueryError(Status.UNAVAILABLE, f"Kafka gave no offsets within {timeout:.1f}s") from exc
        except Exception as exc:  # KafkaException, a missing topic (RuntimeError), ...
            raise QueryError(Status.UNAVAILABLE, f"Kafka offsets unavailable ({exc})") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
