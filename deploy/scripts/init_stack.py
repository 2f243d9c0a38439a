"""One-shot setup of external services: wait until Kafka, ClickHouse and Redis answer, then create
the topics and the ClickHouse schema (both idempotent). Run by the compose `init` service and the
Kubernetes `tweetflow-init` Job.

Why not `tweetflow stack up`: with every address pointing elsewhere it starts nothing either, but
it first makes sure the local stack's Debian packages (maven, redis-server) are installed, which
a slim non-root image has no use for and cannot do. The waiting and the creating are the same
code `stack up` runs (tweetflow.app.stack.components, tweetflow.clients, tweetflow.schema).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tweetflow.app.stack.components import ClickHouseEndpoint, Kafka, Redis
from tweetflow.app.stack.process import wait_until
from tweetflow.clients import ensure_topics
from tweetflow.schema import ensure_schema
from tweetflow.settings import Settings, get_settings


def components(settings: Settings) -> list[Kafka | Redis | ClickHouseEndpoint]:
    return [Kafka(settings), Redis(settings), ClickHouseEndpoint(settings)]


def local_components(settings: Settings) -> list[str]:
    """Components whose address is the local stack's (loopback, or no CLICKHOUSE_URL): inside a
    container nothing listens there, so these settings are a misconfiguration."""
    return [c.name for c in components(settings) if c.managed]


def wait_for_services(settings: Settings, timeout: float) -> list[str]:
    """Names of the components that did not answer within `timeout` seconds (never starts any)."""
    return [c.name for c in components(settings) if not wait_until(c.answers, timeout, 1.0)]


def init(settings: Settings, timeout: float = 120.0) -> list[str]:
    """Wait for the services, then create topics and schema; returns the topics created."""
    silent = wait_for_services(settings, timeout)
    if silent:
        raise RuntimeError(f"no answer within {timeout:.0f}s from: {', '.join(silent)}")
    created = ensure_topics(settings)
    ensure_schema(settings)
    return created


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for each service to answer")
    args = parser.parse_args(argv)
    settings = get_settings()
    local = local_components(settings)
    if local:
        print(f"refusing: {', '.join(local)} point(s) at the local stack; set "
              "KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and CLICKHOUSE_URL to the services' addresses",
              file=sys.stderr)
        return 2
    try:
        created = init(settings, args.timeout)
    except Exception as exc:  # a one-shot job reports the cause and fails
        print(f"init failed: {exc}", file=sys.stderr)
        return 1
    cluster = settings.clickhouse_cluster or "(single server)"
    print(f"topics created: {', '.join(created) or 'none (all existed)'}; "
          f"schema ensured in {settings.clickhouse_database} on {cluster}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
