"""streaming.pipeline's contract with the worker, without a stack: results add up, and the retry
loop backs off on the worker's Stopper and gives up as soon as it is stopped."""

from __future__ import annotations

import threading
import time
from itertools import pairwise

import pytest

from streaming.pipeline import BatchProcessor, BatchResult
from streaming.stopper import Stopper
from tweetflow.settings import Settings


def test_batch_results_add_every_count_and_keep_the_later_offsets() -> None:
    a = BatchResult(messages=5, replayed=1, events=6, dead_letters=1, counted=3, updated=1,
                    duplicates=1, deletes=1, next_offsets={0: 10, 1: 4})
    b = BatchResult(messages=2, replayed=0, events=2, dead_letters=0, counted=1, updated=1,
                    duplicates=0, deletes=0, next_offsets={1: 7, 2: 3})
    total = BatchResult()
    total += a
    total += b
    assert total == BatchResult(messages=7, replayed=1, events=8, dead_letters=1, counted=4,
                                updated=2, duplicates=1, deletes=1,
                                next_offsets={0: 10, 1: 7, 2: 3})
    assert a.next_offsets == {0: 10, 1: 4}, "the operands are left as they were"


def test_stopper_wait_sleeps_until_stopped() -> None:
    stopper = Stopper()
    began = time.monotonic()
    assert stopper.wait(0.15) is False
    assert time.monotonic() - began >= 0.15
    threading.Timer(0.1, stopper.stop).start()
    began = time.monotonic()
    assert stopper.wait(10) is True
    assert time.monotonic() - began < 1
    assert stopper.stopped and stopper.wait(10) is True


@pytest.fixture
def stopper_and_processor():
    stopper = Stopper()
    processor = BatchProcessor(Settings(), stopper=stopper)
    yield stopper, processor
    processor.close()


def test_retry_backs_off_then_succeeds(stopper_and_processor) -> None:
    _, processor = stopper_and_processor
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("down")
        return "stored"

    assert processor._retry("redis", flaky) == "stored"
    gaps = [b - a for a, b in pairwise(calls)]
    assert 0.19 <= gaps[0] < gaps[1] and gaps[1] >= 0.39, gaps  # 0.2 s, then twice as long


def test_retry_raises_the_sink_error_once_stopped_during_the_back_off(
        stopper_and_processor) -> None:
    stopper, processor = stopper_and_processor
    calls: list[float] = []

    def down() -> None:
        calls.append(time.monotonic())
        raise ConnectionError("down")

    threading.Timer(0.3, stopper.stop).start()  # during the second back-off (0.4 s)
    began = time.monotonic()
    with pytest.raises(ConnectionError):
        processor._retry("redis", down)
    assert len(calls) == 2, "the back-off ended when stopped, without another try"
    assert time.monotonic() - began < 1.5
