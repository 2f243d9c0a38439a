"""A tweetflow gRPC service (tweetflow.grpc_server.RunningServer) served from a background event
loop for the length of a `with` block, so synchronous test code can call it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from tweetflow.grpc_server import RunningServer


@contextmanager
def running(start: Callable[[], Awaitable[RunningServer]]) -> Iterator[RunningServer]:
    """Run `start()` (say `lambda: ingest_service.server.start(settings, 0, api_keys=...)`) in a
    loop of its own thread; stop the server and the loop afterwards."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(0.5), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
