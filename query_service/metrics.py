"""Request metrics and the answering path, shared by both transports (grpcio and Connect).

`tweetflow_query_requests_total` and `tweetflow_query_latency_seconds` count every request the
same way whichever transport carried it (codes are the gRPC/Connect code names, upper case). The
service core says which path answered (hot, mart, raw, cache, mixed) through a context variable
holding a small mutable record, because its answers are serialized bytes a wrapper cannot inspect.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Iterator
from contextvars import ContextVar
from itertools import accumulate

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

log = logging.getLogger("query_service.requests")

BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0)  # seconds
SLOW_SECONDS = 1.0  # requests slower than this are logged at INFO even when they succeed


class RequestMetrics:
    """`tweetflow_query_requests_total` {method, path, code} and `tweetflow_query_latency_seconds`
    {method, path}: a Prometheus collector over plain lists.

    Why not prometheus_client's Counter and Histogram: each inc/observe takes a lock and runs a
    few Python frames, which measured ~7 us per call in the server under load (a third of a
    cached answer's handler time); recording here is two list increments and a bisect.
    prometheus_client still renders the exposition (same names, labels and `_created` series).
    Only the event loop's thread records; a scrape (the exporter's thread) copies each list in
    one step under the GIL, so it never sees a half-updated histogram.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], list[float]] = {}  # [count, created]
        # [one count per bucket, then above the last bound, sum, created]
        self._latency: dict[tuple[str, str], list[float]] = {}
        self._les = [*map(floatToGoString, BUCKETS), "+Inf"]

    def counter(self, method: str, path: str, code: str) -> list[float]:
        """The series' cell: add 1 to its [0]."""
        key = (method, path, code)
        cell = self._counts.get(key)
        if cell is None:
            cell = self._counts[key] = [0, time.time()]
        return cell

    def histogram(self, method: str, path: str) -> list[float]:
        """The series' cells: record with `observe`."""
        key = (method, path)
        cells = self._latency.get(key)
        if cells is None:
            cells = self._latency[key] = [0] * (len(BUCKETS) + 1) + [0.0, time.time()]
        return cells

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily("tweetflow_query_requests", ""),
                HistogramMetricFamily("tweetflow_query_latency_seconds", "")]

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "tweetflow_query_requests",
            "Requests answered (gRPC and Connect), by method, answering path and status code",
            labels=("method", "path", "code"))
        for labels, (count, created) in list(self._counts.items()):
            requests.add_metric(labels, count, created=created)
        yield requests
        latency = HistogramMetricFamily(
            "tweetflow_query_latency_seconds",
            "Time to answer a request (gRPC and Connect), by method and answering path",
            labels=("method", "path"))
        for labels, live in list(self._latency.items()):
            cells = list(live)  # one copy, consistent
            latency.add_metric(labels, list(zip(self._les, accumulate(cells[:-2]), strict=True)),
                               cells[-2])
            latency.add_sample("tweetflow_query_latency_seconds_created",
                               dict(zip(("method", "path"), labels, strict=True)), cells[-1])
        yield latency


def observe(cells: list[float], seconds: float) -> None:
    cells[bisect_left(BUCKETS, seconds)] += 1  # the first bound >= seconds: Prometheus's `le`
    cells[-2] += seconds


METRICS = RequestMetrics()
REGISTRY.register(METRICS)


class RequestInfo:
    """What the servicer reports about the request it is answering."""

    __slots__ = ("path",)

    def __init__(self) -> None:
        self.path = "none"


_current: ContextVar[RequestInfo] = ContextVar("tweetflow_query_request")


def start_request() -> tuple[RequestInfo, object]:
    """A fresh record for the request about to be served, and the token that ends it."""
    info = RequestInfo()
    return info, _current.set(info)


def end_request(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def current_request() -> RequestInfo:
    """The record of the request being served (a throwaway one outside the interceptor)."""
    info = _current.get(None)
    return info if info is not None else RequestInfo()




class Series:
    """The cells of one method's series, created on first use per (path, code) and then reused:
    recording a request is then a dict lookup, two list increments and a bisect."""

    __slots__ = ("_cells", "method")

    def __init__(self, method: str) -> None:
        self.method = method
        self._cells: dict[tuple[str, str], tuple[list[float], list[float]]] = {}

    def record(self, path: str, code: str, seconds: float) -> None:
        pair = self._cells.get((path, code))
        if pair is None:
            pair = self._cells[(path, code)] = (METRICS.counter(self.method, path, code),
                                                METRICS.histogram(self.method, path))
        pair[0][0] += 1
        observe(pair[1], seconds)
