"""Messages that cannot be parsed go to the dead-letter topic with their reason, never dropped."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import Producer

from tweetflow.clients import kafka_config
from tweetflow.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    reason_code: str


class DeadLetterSink:
    """Produces dead letters and waits for their acks before the batch's offsets may be committed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer(kafka_config(
            settings, **{"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                         "compression.type": "zstd", "message.max.bytes": 8 * 1024 * 1024}))
        self._errors: list[str] = []

    def write(self, letters: list[DeadLetter], timeout: float = 30.0) -> int:
        """Send and flush; raises RuntimeError if any letter was not acknowledged."""
        if not letters:
            return 0
        self._errors.clear()
        for letter in letters:
            self.producer.produce(
                self.settings.topic_dlq, value=letter.value, key=letter.key,
                headers=[("reason", letter.reason.encode()),
                         ("reason_code", letter.reason_code.encode()),
                         ("source_topic", self.settings.topic_raw.encode()),
                         ("source_partition", str(letter.partition).encode()),
                         ("source_offset", str(letter.offset).encode())],
                on_delivery=self._on_delivery)
            self.producer.poll(0)
        self.flush(timeout)
        return len(letters)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait for the acks of the letters in flight; raises RuntimeError if any is missing."""
        remaining = self.producer.flush(timeout)
        if remaining or self._errors:
            raise RuntimeError(f"dead-letter delivery failed: {remaining} unsent, "
                               f"errors {self._errors[:3]}")

    def close(self) -> None:
        """Flush, best effort: letters not acknowledged belong to a batch that was not committed,
        so they are produced again when it is re-read."""
        try:
            self.flush()
        except RuntimeError as exc:
            log.warning("closing the dead-letter sink: %s", exc)

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self._errors.append(str(err))
