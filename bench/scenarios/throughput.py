"""Sustained end-to-end ingest rate vs the raw bounds (the scenario form of bench.streaming_bench)."""

from bench.streaming_bench import NAME, TITLE, run

__all__ = ["NAME", "TITLE", "run"]
