"""`tweetflow heal`: the hot tier's state (complete from when, or how far its rebuild got), and
with `--run` its rebuild now, in this process (the consumers start one themselves when they find
Redis lost data; this is for when none runs, or to watch it). `--rebuild` wipes the hot tier and
rebuilds it whatever its state (after deleting keys by hand, say). `tweetflow lag` prints the
same state under its table. docs/effectively-once.md#when-redis-loses-data.
"""

from __future__ import annotations

import argparse
import logging
import threading
from datetime import UTC, datetime

from streaming.healer import Healer, ShardPlan
from streaming.hot_tier import HotTier, never_consumed
from tweetflow import hot_history as hh
from tweetflow.settings import Settings, get_settings

SOURCES = {"kafka": "from Kafka",
           "raw": "from the raw tables (a gap, or Kafka no longer holds the whole horizon)"}
PROGRESS_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", action="store_true",
                        help="rebuild the hot tier now if it is incomplete, printing progress")
    parser.add_argument("--rebuild", action="store_true",
                        help="wipe the hot tier and rebuild it, whatever its state")


def describe(settings: Settings, tier: HotTier | None = None) -> list[str]:
    """One line per shard: complete from when (and the last rebuild), or what is missing and how
    far its rebuild got."""
    tier = tier or HotTier(settings)
    lines = []
    histories = tier.read()
    new = any(h.lost for h in histories) and never_consumed(settings)
    for h, (fields, marks) in zip(histories, tier.plans(), strict=True):
        label = "hot tier" if tier.shards == 1 else f"hot tier shard {h.shard}"
        plan = ShardPlan.parse(h.shard, fields)
        state = ("new: nothing consumed yet" if new and h.lost
                 else _state(h.fields, plan, fields, marks))
        lines.append(f"{label}: {state}")
    return lines


def _state(history: dict[str, str], plan: ShardPlan | None, fields: dict[str, str],
           marks: dict[int, int]) -> str:
    start = hh.history_start(history.get(hh.FROM))
    if start is not None and hh.REBUILD not in history:
        last = ""
        if plan is not None and "done" in fields:
            took = float(fields["done"]) - plan.started
            last = (f" (last rebuilt {SOURCES[plan.source]}: {plan.total:,} offsets in "
                    f"{max(took, 0):.0f} s, done {_iso(int(fields['done']))})")
        return f"complete from {_iso(start)}{last}"
    meanwhile = "; answers for the hot horizon come from ClickHouse meanwhile"
    if hh.FROM not in history:
        return ("history lost (a FLUSHALL, an empty restart or eviction), not yet noticed by a "
                "consumer; `tweetflow heal --run` rebuilds it" + meanwhile)
    if hh.REBUILD in history:
        return "keys evicted: to be wiped and rebuilt" + meanwhile
    if plan is None or plan.hole != history.get(hh.HOLE) or "done" in fields:
        return "incomplete, a rebuild is being planned" + meanwhile
    done = plan.done(marks)
    return (f"being rebuilt {SOURCES[plan.source]}: {done / max(plan.total, 1):.0%} ({done:,} of "
            f"{plan.total:,} offsets, started {_iso(int(plan.started))}){meanwhile}")


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def run(args: argparse.Namespace) -> int:
    """Entry point of `tweetflow heal`."""
    settings = get_settings()
    tier = HotTier(settings)
    if args.rebuild:
        found = tier.evictions()
        tier.note_evictions(f"{found[0]} {found[1]}" if found else "")
    if args.run or args.rebuild:
        logging.getLogger("streaming").setLevel(logging.INFO)
        healer = Healer(settings)
        worker = threading.Thread(target=lambda: healer.run(wait=True), daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(PROGRESS_SECONDS)
                print("\n".join(describe(settings, tier)), flush=True)
        except KeyboardInterrupt:
            healer.stopper.stop()
            worker.join()
            return 130
        finally:
            healer.close()
    else:
        print("\n".join(describe(settings, tier)))
    return 0
