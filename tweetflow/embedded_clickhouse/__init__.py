"""A local stand-in for a ClickHouse server: chDB behind ClickHouse's HTTP interface.

Clients (clickhouse-connect, dbt-clickhouse, curl) talk to it exactly as to a real server; see
docs/embedded-clickhouse.md for what it supports and how it handles concurrency.
"""

from tweetflow.embedded_clickhouse.server import EmbeddedClickHouse

__all__ = ["EmbeddedClickHouse"]
