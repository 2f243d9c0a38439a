"""Fixtures of the embedded ClickHouse endpoint tests: one private endpoint per test module."""

from endpoint_support import endpoint

__all__ = ["endpoint"]
