"""A local stand-in for a ClickHouse server: chDB behind ClickHouse's HTTP interface.

Clients (clickhouse-connect, dbt-clickhouse, curl, the JDBC driver, clickhouse-go over HTTP) talk
to it as to a real server; see docs/embedded-clickhouse.md for what it supports, the clients tried
and how it handles concurrency.
"""

from tweetflow.embedded_clickhouse.server import EmbeddedClickHouse

__all__ = ["EmbeddedClickHouse"]
