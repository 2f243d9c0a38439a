"""`make demo`: the whole platform on synthetic data, left running for the user to explore;
`make demo SOURCE=jetstream` streams Bluesky's Jetstream live instead (when a network is there).

Steps: publish a day of history; start the consumers, the query and ingest services and a slow
live producer as detached processes; stream a live burst while printing counts from Redis; start
the Dagster UI and launch a backfill of the marts; then say where everything is.
`tweetflow stack down` stops all of it (see `tweetflow.app.services`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

from tweetflow.app.services import start_app
from tweetflow.clients import redis_client
from tweetflow.hot_keys import bucket_start, dimension_key, tweets_key
from tweetflow.logs import setup_logging
from tweetflow.platforms import BLUESKY, X
from tweetflow.settings import PROJECT_ROOT, Settings, get_settings

HISTORY_TWEETS = 100_000  # one day of history before now, for the marts and the backfill
LIVE_RATE, LIVE_SECONDS = 2_000, 30
TRICKLE_RATE = 50  # left running so the UIs keep moving
GRPCURL = "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3"


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def publish_history(settings: Settings) -> None:
    from streaming.producer import TweetProducer
    from streaming.synthetic import generate

    start = datetime.now(UTC) - timedelta(days=1)
    span_s = 23 * 3600  # ends an hour before now, so no event lies in the future
    producer = TweetProducer(settings)
    for key, value, _ in generate(7, start_ms=int(start.timestamp() * 1000),
                                  count=HISTORY_TWEETS, rate=HISTORY_TWEETS / span_s):
        producer.produce(key, value)
        producer.poll(0)
    stats = producer.flush()
    print(f"published {stats.delivered:,} history messages ({stats.failed} failed) "
          f"from {start:%Y-%m-%d %H:%M} UTC")


def jetstream_reachable(settings: Settings) -> bool:
    """Whether Jetstream answers (`make demo SOURCE=jetstream` falls back to synthetic data
    without a network)."""
    from websockets.sync.client import connect

    try:
        with connect(settings.jetstream_url, open_timeout=5, close_timeout=1):
            return True
    except Exception as exc:
        print(f"Jetstream at {settings.jetstream_url} is not reachable ({exc})")
        return False


def stream_live(settings: Settings, jetstream: bool = False) -> None:
    """Produce a live burst (or read Jetstream) in a child process and print Redis's counts
    while it runs."""
    source = (["--source", "jetstream"] if jetstream else
              ["--rate", str(LIVE_RATE), "--seed", "11", "--duplicates", "0.02"])
    producer = subprocess.Popen([sys.executable, "-m", "tweetflow.app.cli", "produce", *source,
                                 "--duration", str(LIVE_SECONDS)], cwd=PROJECT_ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis_client(settings, decode_responses=True)
    p, on = settings.redis_prefix, BLUESKY if jetstream else X  # the platform's hot keys
    while producer.poll() is None:
        time.sleep(3)
        now = time.time()
        minute = bucket_start(now, "m")
        hour = bucket_start(now, "h")
        top = r.zrevrange(dimension_key(p, "hashtag", "h", hour, platform=on), 0, 4,
                          withscores=True)
        tags = ", ".join(f"#{t} {int(c)}" for t, c in top)
        this_minute = r.get(tweets_key(p, "m", minute, platform=on)) or 0
        this_hour = r.get(tweets_key(p, "h", hour, platform=on)) or 0
        print(f"  {datetime.now(UTC):%H:%M:%S}  this minute: {this_minute:>6}"
              f"  this hour: {this_hour:>7}  top: {tags}", flush=True)
    print(f"live producer finished with exit code {producer.returncode}")


def launch_backfill(settings: Settings) -> str:
    """Ask Dagster for a backfill of the marts over yesterday and today (the daemon runs it)."""
    today = datetime.now(UTC).date()
    partitions = ",".join(str(d) for d in (today - timedelta(days=1), today))
    env = {**os.environ, "DAGSTER_HOME": str(settings.data_dir / "dagster")}
    result = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/dagster"), "job", "backfill", "-w", "workspace.yaml",
         "-j", "marts", "--partitions", partitions, "--noprompt"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(result.stdout[-2000:], result.stderr[-2000:])
    return partitions


def wait_for_backfill(timeout: float = 900) -> str:
    """Poll the webserver's GraphQL API until the newest backfill is done."""
    query = '{ partitionBackfillsOrError(limit: 1) { ... on PartitionBackfills { results { id status } } } }'
    deadline, status = time.monotonic() + timeout, "unknown"
    while time.monotonic() < deadline:
        request = urllib.request.Request("http://127.0.0.1:3000/graphql", method="POST",
                                         data=json.dumps({"query": query}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                results = json.load(response)["data"]["partitionBackfillsOrError"]["results"]
            status = results[0]["status"] if results else "none"
        except (OSError, KeyError, IndexError, ValueError):
            status = "unreachable"
        if status in {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}:
            return status
        time.sleep(5)
    return status


def ensure_grpcurl(settings: Settings) -> str | None:
    """grpcurl from the Go module proxy, into <data dir>/bin (the README's commands use it)."""
    bin_dir = settings.data_dir / "bin"
    target = bin_dir / "grpcurl"
    if target.exists():
        return str(target)
    if not shutil.which("go"):
        return None
    result = subprocess.run(["go", "install", GRPCURL], env={**os.environ, "GOBIN": str(bin_dir)},
                            capture_output=True, text=True, check=False)
    return str(target) if result.returncode == 0 else None


def api_key(settings: Settings) -> str:
    from tweetflow.auth import load_api_keys

    keys = load_api_keys(settings)
    return sorted(keys)[0] if keys else "(checking is off)"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="tweetflow.app.demo")
    parser.add_argument("--source", choices=("synthetic", "jetstream"), default="synthetic",
                        help="live data: synthetic Tweets, or Bluesky's Jetstream (needs a network)")
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings, component="demo")
    jetstream = args.source == "jetstream" and jetstream_reachable(settings)
    _say("publishing one day of synthetic history to Kafka")
    publish_history(settings)
    _say("starting consumers, query service, ingest service and a slow live producer")
    for name in ("consumers", "query", "ingest"):
        start_app(settings, name)
    _say(f"reading Bluesky's Jetstream ({settings.jetstream_url}) for {LIVE_SECONDS} s"
         if jetstream else
         f"streaming {LIVE_RATE:,} Tweets/s for {LIVE_SECONDS} s; counts read back from Redis")
    stream_live(settings, jetstream)
    start_app(settings, "jetstream" if jetstream else "trickle")
    _say("starting the Dagster UI and backfilling the marts for yesterday and today")
    from tweetflow.app.ui import DagsterUI

    DagsterUI(settings).up()
    partitions = launch_backfill(settings)
    status = wait_for_backfill()
    print(f"backfill of {partitions}: {status}")
    grpcurl = ensure_grpcurl(settings) or "grpcurl"
    key = api_key(settings)
    print(f"""
tweetflow is running
  Dagster UI          http://127.0.0.1:3000  (asset graph, checks, the backfill)
  gRPC analytics      127.0.0.1:50051  (API key: {key})
  Live page           http://127.0.0.1:{settings.query_http_port}/#key={key}
  Connect (HTTP) API  http://127.0.0.1:{settings.query_http_port}  (JSON, binary, gRPC-Web; /healthz, /readyz)
  gRPC ingest         127.0.0.1:50052
  ClickHouse (HTTP)   {settings.clickhouse_http_url}  (analyst user: {settings.clickhouse_analyst_user})
  Kafka               {settings.kafka_bootstrap_servers}  (topics {settings.topic_raw}, {settings.topic_dlq})
  Redis               {settings.redis_url}
  Metrics             http://127.0.0.1:9400/metrics (consumers), http://127.0.0.1:9500/metrics (query)
  Logs                {settings.data_dir / 'logs'}

Try:
  {grpcurl} -plaintext 127.0.0.1:50051 list
  {grpcurl} -plaintext -H 'x-api-key: {key}' -d '{{"window": "3600s", "limit": 5}}' \\
      127.0.0.1:50051 tweetflow.v1.AnalyticsService/TrendingHashtags
  curl -H 'Content-Type: application/json' -H 'x-api-key: {key}' -d '{{"window":"3600s"}}' \\
      http://127.0.0.1:{settings.query_http_port}/tweetflow.v1.AnalyticsService/TrendingHashtags
  .venv/bin/tweetflow query trending --window 1h
  .venv/bin/tweetflow lag
Stop everything: .venv/bin/tweetflow stack down""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
