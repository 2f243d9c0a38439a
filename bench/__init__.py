"""tweetflow's benchmarks and validation scenarios (`tweetflow bench`, `python -m bench.streaming_bench`).

Everything here runs against the real local stack; see docs/performance.md.
"""
