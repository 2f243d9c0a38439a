"""Isolation on a shared stack: each scenario gets its own topics, consumer group, ClickHouse
database and Redis key prefix (`tweetflow.namespaces`, as tests/conftest.py does), so it sees
only its own data and the stack can be shared with other work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tweetflow import namespaces
from tweetflow.settings import Settings


@dataclass
class Namespace:
    """One scenario's topics, group, database and key prefix on a (shared) stack."""

    settings: Settings
    tag: str

    @classmethod
    def new(cls, base: Settings, name: str) -> Namespace:
        tag = f"bench_{name}_{uuid.uuid4().hex[:8]}"
        return cls(namespaces.scoped(base, tag), tag)

    extra: list[Settings] = field(default_factory=list)  # other groups' databases and prefixes

    def create(self, topic_config: dict[str, str] | None = None) -> None:
        """Topics (with `topic_config`, e.g. LogAppendTime, on the raw one) and the raw tables."""
        from confluent_kafka.admin import NewTopic

        from tweetflow.clients import ensure_topics, kafka_admin
        from tweetflow.schema import ensure_schema

        s = self.settings
        if topic_config:
            admin = kafka_admin(s)  # keep a reference: a collected client never resolves futures
            futures = admin.create_topics(
                [NewTopic(s.topic_raw, s.topic_partitions, 1, config=topic_config)],
                operation_timeout=30)
            for future in futures.values():
                future.result()
        ensure_topics(s)
        ensure_schema(s)

    def drop(self) -> None:
        """Remove everything the namespace created, groups included (best effort: a stopped store
        keeps its part)."""
        namespaces.drop(self.settings)
        for other in self.extra:  # the raw topic is shared; each group has its own dead letters
            namespaces.drop(other, topics=[other.topic_dlq])

    def with_group(self, suffix: str, **updates: Any) -> Settings:
        """The same topic read by another group into another database and key prefix."""
        tag = f"{self.tag}_{suffix}"
        other = namespaces.scoped(self.settings, tag, topic_raw=self.settings.topic_raw, **updates)
        self.extra.append(other)
        return other


@contextmanager
def namespace(base: Settings, name: str, *, topic_config: dict[str, str] | None = None,
              keep: bool = False) -> Iterator[Namespace]:
    ns = Namespace.new(base, name)
    ns.create(topic_config)
    try:
        yield ns
    finally:
        if not keep:
            ns.drop()
