"""streaming.pipeline's contract with the worker, without a stack: results add up, and the retry
loop backs off on the worker's Stopper and gives up as soon as it is stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


class FakeTime:
    """`time` as streaming.stopper sees it: a clock that moves only when slept on."""

    def __init__(self, on_sleep: Callable[[int], None] = lambda n: None) -> None:
        self.now, self.sleeps, self._on_sleep = 0.0, [], on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        self.now += seconds
        self._on_sleep(len(self.sleeps))


def test_stopper_wait_sleeps_its_time_in_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeTime()
    monkeypatch.setattr("streaming.stopper.time", clock)
    assert Stopper().wait(0.25) is False
    assert clock.sleeps == [0.1, 0.1, 0.05]


def test_stopper_wait_ends_at_the_poll_after_the_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    stopper = Stopper()
    clock = FakeTime(on_sleep=lambda n: n == 2 and stopper.stop())
    monkeypatch.setattr("streaming.stopper.time", clock)
    assert stopper.wait(10) is True
    assert clock.sleeps == [0.1, 0.1]  # not the 10 s asked for
    assert stopper.stopped and stopper.wait(10) is True and clock.sleeps == [0.1, 0.1]


class RecordingStopper(Stopper):
    """Records the back-offs the processor asks for instead of sleeping them; stops during the
    `stop_at`-th one, as a SIGTERM arriving then would."""

    def __init__(self, stop_at: int = 0) -> None:
        super().__init__()
        self.waits: list[float] = []
        self._stop_at = stop_at

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        if len(self.waits) == self._stop_at:
            self.stop()
        return self.stopped


@pytest.fixture
def processor() -> Iterator[BatchProcessor]:
    processor = BatchProcessor(Settings(), stopper=RecordingStopper(stop_at=2))
    yield processor
    processor.close()


def test_retry_backs_off_exponentially_then_succeeds() -> None:
    stopper = RecordingStopper()
    processor = BatchProcessor(Settings(), stopper=stopper)
    tries: list[int] = []

    def flaky() -> str:
        tries.append(len(stopper.waits))
        if len(tries) < 7:
            raise ConnectionError("down")
        return "stored"

    try:
        assert processor._retry("redis", flaky) == "stored"
    finally:
        processor.close()
    assert stopper.waits == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4]  # doubling from 0.2 s ...
    assert tries == [0, 1, 2, 3, 4, 5, 6]  # ... each try after the back-off before it


def test_retry_backs_off_at_most_10_seconds() -> None:
    stopper = RecordingStopper(stop_at=9)
    processor = BatchProcessor(Settings(), stopper=stopper)

    def down() -> None:
        raise ConnectionError("down")

    try:
        with pytest.raises(ConnectionError):
            processor._retry("redis", down)
    finally:
        processor.close()
    assert stopper.waits == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]


def test_retry_raises_the_sink_error_once_stopped_during_the_back_off(
        processor: BatchProcessor) -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        processor._retry("redis", down)
    assert len(calls) == 2, "the back-off ended when stopped, without another try"
