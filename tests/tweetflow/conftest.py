"""Fixtures of the embedded ClickHouse endpoint tests: one private endpoint per test module."""

from endpoint_support import endpoint, table

__all__ = ["endpoint", "table"]
