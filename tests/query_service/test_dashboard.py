"""The live page at `/`, driven by headless Chromium (Debian's package, installed by the project's
tweetflow.app.stack.system_packages when missing) against the real stack: every number it shows
equals what the Connect JSON API answers, and a screenshot is saved for the README
(docs/img/dashboard.png)."""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from qs_support import API_KEY, at, post, rfc3339, serving, tweet, write_events

from tweetflow.settings import Settings

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = PROJECT_ROOT / "docs" / "img" / "dashboard.png"
TAGS = ("python", "rust", "kafka", "clickhouse", "redis", "dbt", "dagster", "grpc")
LANGS = ("en", "en", "en", "de", "ja", "es", "fr")
KINDS = ("original", "original", "reply", "retweet", "quote")


def chromium() -> str:
    from tweetflow.app.stack.process import StackError
    from tweetflow.app.stack.system_packages import CHROMIUM, ensure_command

    try:
        return ensure_command(CHROMIUM)
    except StackError as exc:  # not root and not installed: it truly cannot be had here
        pytest.skip(f"headless Chromium unavailable: {exc}")


def seed_hour(settings: Settings) -> int:
    """~850 Tweets over the last 50 minutes, busier lately, with a hashtag surging; returns the
    minute they end at. The page's ranges (the last hour, trending's window) reach past every one
    of them even if a minute turns while the test runs."""
    rnd = random.Random(13)
    minute = int(time.time()) // 60 * 60
    events = []
    for m in range(1, 51):
        for j in range(8 + (60 - m) // 4):
            i = m * 100 + j
            tag = "surge" if m < 15 and j % 3 else rnd.choice(TAGS)
            events.append(tweet(at(minute - 60 * m + rnd.randrange(60)), i,
                                author=f"user{rnd.randrange(30)}", author_id=1 + rnd.randrange(30),
                                kind=rnd.choice(KINDS), lang=rnd.choice(LANGS), hashtags=(tag,),
                                mentions=(f"dev{rnd.randrange(12)}",),
                                domains=(rnd.choice(("github.com", "example.com", "news.org",
                                                     "clickhouse.com")),)))
    write_events(settings, events)
    return minute


class Metrics(HTMLParser):
    """Every element's data-metric -> data-value, and the body's data attributes (`since`: the
    start of the page's last-hour questions)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.body: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "body":
            self.body = found
        if found.get("data-metric"):
            self.values[found["data-metric"] or ""] = found.get("data-value") or ""


def browse(binary: str, url: str, *extra: str) -> str:
    """Load `url` in headless Chromium, let its scripts run (15 s of virtual time, past two
    refreshes), and return stdout (the DOM with --dump-dom)."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--virtual-time-budget=15000", *extra, url],
            capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def api(url: str, method: str, body: dict) -> dict:
    status, _, answer = post(url, method, json.dumps(body).encode())
    assert status == 200, answer
    return json.loads(answer)


def test_the_page_shows_the_apis_numbers(test_settings: Settings) -> None:
    binary = chromium()
    minute = seed_hour(test_settings)
    with serving(test_settings, http=True) as srv:
        page = f"{srv.http_url}/#key={API_KEY}"
        parser = Metrics()
        parser.feed(browse(binary, page, "--dump-dom"))
        shown = parser.values
        hour_ago = parser.body.get("data-since")
        assert parser.body.get("data-loaded") == "true", parser.body
        trending = api(srv.http_url, "TrendingHashtags", {"window": "3600s", "limit": 10})
        volume = api(srv.http_url, "TweetVolume", {"start": hour_ago,
                                                   "granularity": "GRANULARITY_MINUTE"})
        mentions = api(srv.http_url, "TopMentions", {"start": hour_ago, "limit": 10})
        domains = api(srv.http_url, "TopDomains", {"start": hour_ago, "limit": 10})
        status = api(srv.http_url, "PipelineStatus", {})
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browse(binary, page, f"--screenshot={SCREENSHOT}", "--window-size=1280,1520")
    assert shown, "the page showed no numbers"
    assert trending["hashtags"][0]["hashtag"] == "surge"
    for h in trending["hashtags"]:
        assert shown[f"trending:{h['hashtag']}:count"] == h["count"]
        assert float(shown[f"trending:{h['hashtag']}:velocity"]) == pytest.approx(h["velocity"])
    assert shown["volume:total"] == volume["total"] and int(volume["total"]) > 700
    for lang, count in volume["byLang"].items():
        assert shown[f"volume:lang:{lang}"] == count
    for kind, count in volume["byKind"].items():
        assert shown[f"volume:kind:{kind}"] == count
    for name, answer in (("mentions", mentions), ("domains", domains)):
        assert {k.split(":", 1)[1]: v for k, v in shown.items() if k.startswith(f"{name}:")} == {
            e["entity"]: e["count"] for e in answer["entities"]}
    assert shown["lag:total"] == str(int(status.get("consumerLag", "0")))
    assert shown["freshness:newest-minute"] == status["newestMinute"] == rfc3339(minute - 60)
    assert SCREENSHOT.stat().st_size > 20_000
