"""`/readyz`: whether the stores the answers come from respond (Redis PING, ClickHouse `SELECT 1`),
and the state of the hot tier (`hot`: complete from when, or lost, evicted, being rebuilt: then
the answers for the hot horizon come from ClickHouse, exact but slower; query_service.hot_tier).

Ready means both answer: the service can still answer with one of them down (it falls back from
Redis to ClickHouse), but only slower or partly, which is what a load balancer should know. A hot
tier being rebuilt leaves the service ready: every instance answers the same way meanwhile. The
result is kept for CHECK_TTL seconds so a probe every second costs at most one round trip to each.
`/healthz` (liveness) asks nothing: the process answers, so it is alive.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from query_service.marts import Query

CHECK_TTL = 1.0  # seconds
CHECK_TIMEOUT = 1.0  # seconds per store


class Readiness:
    def __init__(self, backends: Any) -> None:
        self.b = backends
        self._last: tuple[float, bool, bytes] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> tuple[bool, bytes]:
        """(ready, the JSON body: each store's state)."""
        async with self._lock:
            if self._last is None or self._last[0] < time.monotonic():
                redis, clickhouse, hot = await asyncio.gather(self._redis(), self._clickhouse(),
                                                              self._hot())
                ready = redis == clickhouse == "ok"
                body = orjson.dumps({"status": "ready" if ready else "not ready",
                                     "redis": redis, "clickhouse": clickhouse,
                                     "hot": hot}) + b"\n"
                self._last = (time.monotonic() + CHECK_TTL, ready, body)
            return self._last[1], self._last[2]

    async def _redis(self) -> str:
        try:
            await asyncio.wait_for(self.b.redis.ping(), CHECK_TIMEOUT)
        except Exception as exc:  # any failure means not ready, with the reason
            return f"error: {str(exc) or type(exc).__name__}"
        return "ok"

    async def _hot(self) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self.b.tier.describe(), CHECK_TIMEOUT)
        except Exception as exc:  # Redis down: said by "redis"
            return {"state": "unknown", "error": str(exc) or type(exc).__name__}

    async def _clickhouse(self) -> str:
        try:
            await self.b.clickhouse.rows(Query("SELECT 1", {}), CHECK_TIMEOUT)
        except Exception as exc:  # ClickHouseUnavailable, or any other failure
            return f"error: {str(exc) or type(exc).__name__}"
        return "ok"
