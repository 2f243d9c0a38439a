"""What every scenario needs: an isolated namespace on the real stack, load generators and
consumer groups as real processes, readers of what the stores hold, and the truth to compare with.

Isolation works as in tests/conftest.py: each namespace has its own topics, consumer group,
ClickHouse database and Redis key prefix, so a scenario sees only its own data and the stack can
be shared with other work. Child processes get the namespace through the environment
(`Settings.to_env`), exactly as a deployed `tweetflow consume` would.

One module per concern; scenarios use them as `harness.X` through the names below:
- `isolation`: a scenario's namespace (`namespace`, `Namespace`)
- `processes`: child processes' environment, stopping, /proc look-ups (children, CPU), free ports
- `cpu`: CPU per message per process (workers and the stack's servers), from /proc
- `consumers`, `load`, `query_server`: the consumer groups, load generators and query service
- `truth`, `stores`, `verification`: what the topic says the stores must hold, what they hold,
  and the verdict
- `applied_offsets`, `lag`, `recovery`: how far the pipeline got, its lag over time, and how it
  recovered from an event (a node killed, the group scaled)
- `dbt_runs`: dbt against a namespace; `progress`: the terminal's progress bar

The streaming tests import some of these pieces (free ports, the Redis and ClickHouse readers);
their expectation stays their own (see `truth`).
"""

from __future__ import annotations

from bench.harness.applied_offsets import applied, require_applied, wait_applied
from bench.harness.consumers import Consumers, wait_group
from bench.harness.cpu import CpuMeter, cpu_seconds, stack_pids
from bench.harness.dbt_runs import dbt, run_dbt
from bench.harness.isolation import Namespace, namespace
from bench.harness.lag import LagSample, LagSampler
from bench.harness.load import LoadGen, produce
from bench.harness.processes import (
    child_env,
    children_of,
    die_with_parent,
    free_port,
    free_ports,
    group_cpu_seconds,
    stop_process,
)
from bench.harness.progress import ProgressBar, sleep_with_progress
from bench.harness.query_server import BENCH_API_KEY, start_query_server, wait_serving
from bench.harness.recovery import Recovery, lag_threshold, recovery
from bench.harness.stores import (
    STORED_ROW_COUNTS,
    clickhouse_counts,
    clickhouse_rows,
    dlq_records,
    redis_state,
    redis_watermarks,
)
from bench.harness.truth import Truth
from bench.harness.verification import (
    Verdict,
    diff_counters,
    hot_hour_hashtags,
    hot_minute_counts,
    seen_ids,
    verify,
)
from streaming.offsets import KafkaRecord, read_topic

__all__ = [
    "BENCH_API_KEY", "STORED_ROW_COUNTS", "Consumers", "CpuMeter", "KafkaRecord", "LagSample",
    "LagSampler", "LoadGen", "Namespace", "ProgressBar", "Recovery", "Truth", "Verdict", "applied",
    "child_env", "children_of", "clickhouse_counts", "clickhouse_rows", "cpu_seconds", "dbt",
    "die_with_parent", "diff_counters", "dlq_records", "free_port", "free_ports",
    "group_cpu_seconds", "hot_hour_hashtags", "hot_minute_counts", "lag_threshold", "namespace",
    "produce", "read_topic", "recovery", "redis_state", "redis_watermarks", "require_applied",
    "run_dbt", "seen_ids", "sleep_with_progress", "stack_pids", "start_query_server",
    "stop_process", "verify", "wait_applied", "wait_group", "wait_serving",
]
