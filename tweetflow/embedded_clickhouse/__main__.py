"""`python -m tweetflow.embedded_clickhouse --data-dir DIR --port 8123`: serve in the foreground."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from tweetflow.embedded_clickhouse.in_flight import DRAIN_SECONDS
from tweetflow.embedded_clickhouse.server import EmbeddedClickHouse
from tweetflow.logs import setup_logging
from tweetflow.settings import EMBEDDED_CLICKHOUSE_HOST, get_settings


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)  # unwinds serve_forever so the data directory is closed cleanly


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m tweetflow.embedded_clickhouse",
                                     description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir / "clickhouse",
                        help="chDB data directory, created if missing (default: %(default)s)")
    parser.add_argument("--host", default=EMBEDDED_CLICKHOUSE_HOST, help="default: %(default)s")
    parser.add_argument("--port", type=int, default=settings.embedded_clickhouse_port,
                        help="default: %(default)s")
    parser.add_argument("--drain-seconds", type=float, default=DRAIN_SECONDS,
                        help="on SIGTERM, how long running statements may finish before they are "
                        "cancelled (default: %(default)s)")
    args = parser.parse_args(argv)
    setup_logging(settings, component="clickhouse")
    signal.signal(signal.SIGTERM, _stop)
    server = EmbeddedClickHouse(args.data_dir, args.host, args.port, settings)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close(args.drain_seconds)


if __name__ == "__main__":
    main()
