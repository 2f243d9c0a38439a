"""Messages made before the send loop needs them: the synthetic and file sources at Kafka's pace.

Why: making a message costs far more than sending it. Measured on this 2-core VM: the synthetic
source generates ~50,000 messages/s on a core (~20 µs each), a file line costs ~4 µs to
decompress and ~1.4 µs to key, while sending one costs the producer ~4 µs of CPU (all its
threads: the batch call, the delivery report, librdkafka's lz4 and framing); Kafka's own producer
appends 130,000-360,000 of these 1.24 KB messages a second to the local broker, with the load
of the moment. Made in the send loop, messages came at the generator's pace: 42,400/s.

So `run_plan` takes messages from a `Lookahead`: a buffer filled (1) before the clock starts, with
as many messages as the plan will need faster than they can be made on the fly (`ahead_needed`),
and (2) whenever the pacing waits (`fill_for`, in place of the token bucket's sleep), so the idle
time of a steady phase makes the messages of the next burst (a phase at the machine's pace has
no such time: what it sends must all be made before). The buffer holds at most `limit`
messages (~1.4 KB of memory each); past it, messages are made on the fly as before. `limit` is
what the plan's fast phases send (`fill_target`), within the memory cap: a steady run keeps
nothing ahead (filling every wait up to the cap made `make demo`'s endless 50/s trickle grow
by 230 MB a second).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streaming.pacing import RunPlan
    from streaming.producer import Message

__all__ = ["AHEAD_BYTES", "GENERATION_SHARE", "Lookahead", "ahead_needed", "fill_target"]

AHEAD_BYTES = 2 << 30  # memory the buffers of one run may hold, all processes together
GENERATION_SHARE = 0.5  # of the measured generation rate, counted on while the run sends
MESSAGE_OVERHEAD = 200  # bytes a buffered message costs beyond its payload (tuple, key, int)
_FILL_STEP = 8  # messages made between two looks at the clock while filling


class Lookahead:
    """A message iterator with a buffer in front; see the module docstring."""

    def __init__(self, source: Iterator[Message], limit: int = 0) -> None:
        self._source = source
        self._buffer: list[Message] = []
        self._head = 0  # the next message to hand out; the list is compacted now and then
        self.limit = limit
        self.exhausted = False
        self.made_ahead = 0  # messages that were made before they were needed

    def __len__(self) -> int:
        return len(self._buffer) - self._head

    def __iter__(self) -> Lookahead:
        return self

    def __next__(self) -> Message:
        batch = self.take(1)
        if not batch:
            raise StopIteration
        return batch[0]

    def buffered_bytes(self) -> int:
        """The payload bytes in the buffer."""
        return sum(len(m[1]) for m in self._buffer[self._head:])

    def fill(self, n: int) -> int:
        """Make up to `n` more messages into the buffer (never past `limit`); how many it made."""
        room = min(n, self.limit - len(self))
        if room <= 0 or self.exhausted:
            return 0
        before = len(self._buffer)
        self._buffer.extend(islice(self._source, room))
        made = len(self._buffer) - before
        self.made_ahead += made
        if made < room:
            self.exhausted = True
        return made

    def fill_for(self, seconds: float, poll: Callable[[float], Any],
                 wanted: float = math.inf) -> None:
        """Spend `seconds` making messages into the buffer, calling `poll(0)` between steps
        (delivery callbacks); once it is full, holds the `wanted` messages the rest of the run
        needs, or the source ends, `poll` the rest (the CPU is then the broker's)."""
        deadline = time.monotonic() + seconds
        full = min(self.limit, wanted)
        while (left := deadline - time.monotonic()) > 0:
            if self.exhausted or len(self) >= full:
                poll(left)
                return
            self.fill(min(_FILL_STEP, math.ceil(full - len(self))))
            poll(0)

    def take(self, n: int) -> list[Message]:
        """The next `n` messages (fewer only when the source ends): the buffer's first, then
        made on the fly."""
        head, buffer = self._head, self._buffer
        batch = buffer[head:head + n]
        head += len(batch)
        if head > 65_536 and head * 2 > len(buffer):  # drop what was handed out
            del buffer[:head]
            head = 0
        self._head = head
        if len(batch) < n and not self.exhausted:
            more = list(islice(self._source, n - len(batch)))
            if len(more) < n - len(batch):
                self.exhausted = True
            batch += more
        return batch


def fill_target(plan: RunPlan, generation_rate: float, memory_limit: int) -> int:
    """The most messages the buffer ever needs to hold: what the plan sends in phases faster
    than the pacing's waits make messages (above `GENERATION_SHARE` x `generation_rate` a
    second, or unpaced), within `memory_limit` messages."""
    g = GENERATION_SHARE * generation_rate
    cap = plan.count if plan.count and plan.count > 0 else math.inf
    fast = sent = 0.0
    for start, end, rate in plan.phases():
        if rate <= 0:
            fast += cap - sent
            break
        seconds = min(end - start, (cap - sent) / rate)
        fast += rate * seconds if rate > g else 0.0
        sent += rate * seconds
        if sent >= cap:
            break
    return memory_limit if math.isinf(fast) else min(memory_limit, math.ceil(fast))


def ahead_needed(plan: RunPlan, generation_rate: float, limit: int) -> int:
    """How many messages to make before the clock starts so that the plan never waits for one.

    Phase by phase, the buffer gains what the pacing's waits make (`g` = `GENERATION_SHARE` x
    `generation_rate` a second, only in phases slower than `g`: a faster phase leaves no waits)
    and loses what the phase sends; what is made ahead must cover the lowest the balance gets.
    An unpaced phase wants everything left at once. Capped at `limit` (also when the balance
    falls forever).
    """
    g = GENERATION_SHARE * generation_rate
    cap = plan.count if plan.count and plan.count > 0 else math.inf
    need = balance = sent = 0.0
    for start, end, rate in plan.phases():
        if rate <= 0:
            need = max(need, cap - sent - balance)
            break
        seconds = min(end - start, (cap - sent) / rate)
        if math.isinf(seconds):
            need = math.inf if rate > g else need
            break
        balance += (g if rate <= g else 0.0) * seconds - rate * seconds
        need = max(need, -balance)
        sent += rate * seconds
        if sent >= cap:
            break
    return limit if math.isinf(need) else max(0, min(limit, math.ceil(need)))
