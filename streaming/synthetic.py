"""Deterministic synthetic X API v2 filtered-stream messages, fast enough not to bound a benchmark.

What the stream looks like (all of it fixed by `seed`, except event times in "now" mode):

* v2 stream messages `{"data", "includes", "matching_rules"}` as X sends them with the expansions
  `author_id, referenced_tweets.id, referenced_tweets.id.author_id, entities.mentions.username,
  geo.place_id`: `includes.users` (author, referenced authors, mentioned users), `includes.tweets`
  (the retweeted, quoted or replied-to Tweet), `includes.places` for geotagged Tweets.
* Authors and hashtags are Zipf-Mandelbrot distributed over fixed vocabularies (5,000 users,
  3,000 hashtags, 400 domains, 300 cashtags), built from `vocab_seed` so sources with different
  seeds talk about the same world. Hashtags are written in mixed case (`#ClickHouse`,
  `#clickhouse`), as people do; downstream lower-cases them.
* Each author writes mostly in their own language (en, ja, es, pt, ar, fr, ko, tr, de, hi, in,
  und); kinds are ~35% retweets, 15% replies, 8% quotes, the rest originals. Retweets, replies and
  quotes reference recent Tweets of this stream or older Tweets that only appear in `includes`.
* Retweet text is "RT @handle: " + the original cut at 140 characters with "…", with only the
  entities that survive the cut, exactly as X truncates it; the full original is in `includes`.
* ~0.5% of messages are v2 compliance deletes of Tweets this source emitted earlier.
* Tweet ids are Snowflake ids minted at the event time (`tweetflow.snowflake`): `snowflake_ms(id)`
  is the event time in ms. `created_at` has whole seconds ("….000Z") like the real API; the id carries
  the milliseconds (the parser refines `created_at` from it).
* A `Burst` marks an event-time span in which a chosen hashtag is added to a given share of
  Tweets (retweets spread it by retweeting Tweets of the burst), which is what trending looks like.

Entity indices are code-point offsets into `text` (as in the API) and always consistent with it.
Text never contains "&", "<" or ">", so it needs no HTML escaping.

Why hand-rolled sampling (precomputed cumulative tables + `bisect`, bit-sliced small tables)
rather than `random.choices` or numpy: per-message Python overhead is the whole cost here, and
these are the cheapest exact draws available from the standard library (≥ 50k messages/s).
"""

from __future__ import annotations

import random
import time
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from streaming.synthetic_vocabulary import (
    _EMOJI,
    _NO_ENTITIES,
    _SHORTENERS,
    _b62,
    _vocab,
)
from tweetflow.json_bytes import dumps_kept
from tweetflow.snowflake import SNOWFLAKE_EPOCH_MS, snowflake_id

__all__ = ["SNOWFLAKE_EPOCH_MS", "Burst", "Message", "SyntheticSource", "generate", "snowflake_id"]

Message = tuple[bytes, bytes, int]  # (key = Tweet id as decimal ASCII, value = payload, Tweet id)

# Per-message probabilities.
DELETE_FRACTION = 0.005
_KIND_CUTS = (0.35, 0.50, 0.58)  # retweet < 0.35 <= reply < 0.50 <= quote < 0.58 <= original
_OWN_LANG = 0.92  # share of an author's Tweets in their own language
_UND_SHARE = 0.04  # Tweets with no linguistic content (only entities, emoji)
_RECENT_REF = 0.6  # retweets/replies/quotes of this stream's recent Tweets (else older ones)
_QUOTE_LINK = 0.5  # quotes whose text ends with the quoted Tweet's link
_URL_SHARE, _MENTION_SHARE, _CASHTAG_SHARE = 0.22, 0.10, 0.03
_GEO_SHARE, _SENSITIVE_SHARE, _SHORTENER_SHARE = 0.015, 0.02, 0.12
_RECENT_SIZE, _DELETABLE_SIZE, _BURST_POOL = 4096, 20000, 64
_HIST_WORKER = 1023  # Snowflake worker bits of Tweets that only appear in `includes`

@dataclass(frozen=True, slots=True)
class Burst:
    """An event-time span [start_ms, end_ms) in which `share` of Tweets carry `hashtag`.

    `hashtag=None` means the source's `burst_hashtag` (a mid-tail tag, so the spike stands out).
    """

    start_ms: int
    end_ms: int
    hashtag: str | None = None
    share: float = 0.35


def _iso_seconds(ms: int) -> str:
    t = time.gmtime(ms // 1000)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.000Z")


def _iso_ms(ms: int) -> str:
    return f"{_iso_seconds(ms)[:-4]}{ms % 1000:03d}Z"


class SyntheticSource:
    """An endless, seeded stream of v2 filtered-stream messages; see the module docstring.

    `start_ms=None`: event time is the wall clock at each `next_message()` ("now", what the hot
    path expects). `start_ms=T`: event times start at T and advance by exponential gaps averaging
    1/`rate` seconds, so a day of history is `generate(start_ms=day, count=86_400 * rate, rate=…)`.
    The output is a pure function of the arguments in the second mode.
    """

    def __init__(self, seed: int = 42, start_ms: int | None = None, rate: float = 1000.0, *,
                 bursts: Sequence[Burst] = (), delete_fraction: float = DELETE_FRACTION,
                 vocab_seed: int = 0, worker: int | None = None) -> None:
        if start_ms is None and rate <= 0:
            raise ValueError("rate must be positive")
        self._rng = random.Random(seed)
        self._v = _vocab(vocab_seed)
        self._worker = (seed % 1000) if worker is None else worker % 1000
        self._clock_ms = None if start_ms is None else float(start_ms)
        self._gap_mean_ms = 1000.0 / rate if rate > 0 else 1.0
        self._delete_fraction = delete_fraction
        self._bursts: list[Burst] = []
        self.burst_hashtag = self._v.tags[self._rng.randrange(300, 1200)][0]
        for b in bursts:
            self.add_burst(b)
        self._last_ms, self._seq, self._hist_seq = 0, 0, 0
        self._sec, self._sec_iso = -1, ""
        self._recent: list[dict[str, Any]] = []  # data dicts of referenceable stream Tweets
        self._recent_at = 0
        self._burst_pool: list[dict[str, Any]] = []
        self._deletable: list[tuple[str, str] | None] = []
        self._deletable_at = 0

    # --- public API ------------------------------------------------------------------------------

    def add_burst(self, burst: Burst) -> None:
        """Mark an event-time span in which a hashtag's share jumps (see `Burst`)."""
        if burst.hashtag is None:
            burst = Burst(burst.start_ms, burst.end_ms, self.burst_hashtag, burst.share)
        self._bursts.append(burst)

    def __iter__(self) -> Iterator[Message]:
        while True:
            yield self.next_message()

    def next_message(self, at_ms: int | None = None) -> Message:
        """The next (key, value, tweet id); for a delete, the deleted Tweet's id and key. `at_ms`:
        its event time (a schedule's), instead of the source's own clock."""
        ms = self._now_ms() if at_ms is None else at_ms
        if self._deletable and self._rng.random() < self._delete_fraction:
            msg = self._delete(ms)
            if msg is not None:
                return msg
        return self._tweet(ms)

    # --- time and ids ----------------------------------------------------------------------------

    def _now_ms(self) -> int:
        if self._clock_ms is None:
            return time.time_ns() // 1_000_000
        self._clock_ms += self._rng.expovariate(1.0) * self._gap_mean_ms
        return int(self._clock_ms)

    def _mint(self, ms: int) -> tuple[int, int]:
        """A fresh stream Tweet id at `ms` (or just after, if 4096 ids were minted in that ms)."""
        if ms > self._last_ms:
            self._last_ms, self._seq = ms, 0
        else:
            self._seq += 1
            if self._seq > 4095:
                self._last_ms, self._seq = self._last_ms + 1, 0
        ms = self._last_ms
        return snowflake_id(ms, self._worker, self._seq), ms

    def _created_at(self, ms: int) -> str:
        sec = ms // 1000
        if sec != self._sec:
            self._sec, self._sec_iso = sec, _iso_seconds(ms)
        return self._sec_iso

    # --- message kinds ---------------------------------------------------------------------------

    def _delete(self, ms: int) -> Message | None:
        d = self._deletable
        i = int(self._rng.random() * len(d))
        entry = d[i]
        if entry is None:
            return None
        d[i] = None
        tid, author = entry
        doc = {"data": {"delete": {"tweet": {"id": tid, "author_id": author},
                                   "event_at": _iso_ms(ms)}}}
        return tid.encode(), dumps_kept(doc), int(tid)

    def _burst_tag(self, ms: int) -> str | None:
        for b in self._bursts:
            if b.start_ms <= ms < b.end_ms and self._rng.random() < b.share:
                return b.hashtag
        return None

    def _tweet(self, ms: int) -> Message:
        rnd = self._rng.random
        v = self._v
        author = v.users[bisect_right(v.user_cum, rnd() * v.user_cum[-1])]
        lang = v.lang_of[author["id"]] if rnd() < _OWN_LANG else v.lang_table[int(rnd() * 256)]
        if rnd() < _UND_SHARE:
            lang = "und"
        burst_tag = self._burst_tag(ms) if self._bursts else None
        tid, ms = self._mint(ms)
        sid = str(tid)
        users = {author["id"]: author}
        includes: dict[str, Any] = {"users": users}
        k = rnd()
        if k < _KIND_CUTS[0]:
            data = self._retweet(sid, author, ms, burst_tag, users, includes)
        else:
            if k < _KIND_CUTS[1]:
                data = self._reply(sid, author, lang, ms, burst_tag, users, includes)
            elif k < _KIND_CUTS[2]:
                data = self._quote(sid, author, lang, ms, burst_tag, users, includes)
            else:
                data = self._original(sid, author, lang, ms, burst_tag, users)
            self._remember(data, burst_tag)
        if rnd() < _GEO_SHARE and lang in v.places:
            place = v.places[lang][int(rnd() * len(v.places[lang]))]
            data["geo"] = {"place_id": place["id"]}
            includes["places"] = [place]
        includes["users"] = list(users.values())
        doc = {"data": data, "includes": includes,
               "matching_rules": v.rule_table[int(rnd() * 64)]}
        self._forgettable(sid, author["id"])
        return sid.encode(), dumps_kept(doc), tid

    def _remember(self, data: dict[str, Any], burst_tag: str | None) -> None:
        """Keep a referenceable Tweet (retweets are not: one retweets the original)."""
        if len(self._recent) < _RECENT_SIZE:
            self._recent.append(data)
        else:
            self._recent[self._recent_at] = data
            self._recent_at = (self._recent_at + 1) % _RECENT_SIZE
        if burst_tag is not None:
            pool = self._burst_pool
            if len(pool) >= _BURST_POOL:
                pool[int(self._rng.random() * _BURST_POOL)] = data
            else:
                pool.append(data)

    def _forgettable(self, sid: str, author_id: str) -> None:
        if len(self._deletable) < _DELETABLE_SIZE:
            self._deletable.append((sid, author_id))
        else:
            self._deletable[self._deletable_at] = (sid, author_id)
            self._deletable_at = (self._deletable_at + 1) % _DELETABLE_SIZE

    # --- Tweet bodies ----------------------------------------------------------------------------

    def _base(self, sid: str, author: dict[str, Any], lang: str, ms: int, text: str,
              entities: dict[str, list], conversation_id: str) -> dict[str, Any]:
        rnd, v = self._rng.random, self._v
        sc = v.small_counts
        data: dict[str, Any] = {
            "id": sid, "text": text, "edit_history_tweet_ids": [sid], "author_id": author["id"],
            "created_at": self._created_at(ms), "conversation_id": conversation_id, "lang": lang,
            "source": v.source_table[int(rnd() * 128)],
            "possibly_sensitive": rnd() < _SENSITIVE_SHARE,
            "public_metrics": {"retweet_count": sc[int(rnd() * 1024)] >> 2,
                               "reply_count": sc[int(rnd() * 1024)] >> 2,
                               "like_count": sc[int(rnd() * 1024)],
                               "quote_count": sc[int(rnd() * 1024)] >> 4,
                               "bookmark_count": 0, "impression_count": sc[int(rnd() * 1024)] * 37},
        }
        if entities:
            data["entities"] = entities
        return data

    def _original(self, sid: str, author: dict[str, Any], lang: str, ms: int,
                  burst_tag: str | None, users: dict[str, dict]) -> dict[str, Any]:
        text, ents = self._content("", lang, burst_tag, users)
        return self._base(sid, author, lang, ms, text, ents, sid)

    def _referenced(self, burst_tag: str | None, ms: int) -> dict[str, Any]:
        """A Tweet to retweet, reply to or quote: a recent one of this stream, else an older one
        that appears only in `includes` (minted on a separate worker, so ids never collide)."""
        rnd = self._rng.random
        if burst_tag is not None and self._burst_pool:
            return self._burst_pool[int(rnd() * len(self._burst_pool))]
        if burst_tag is None and self._recent and rnd() < _RECENT_REF:
            n = len(self._recent)
            newest = (self._recent_at - 1) % n
            return self._recent[(newest - int(n * rnd() ** 3)) % n]  # skewed to the newest
        v = self._v
        author = v.users[bisect_right(v.user_cum, rnd() * v.user_cum[-1])]
        lang = v.lang_of[author["id"]]
        past = ms - 60_000 - int(self._rng.expovariate(1.0) * 6 * 3600_000)
        self._hist_seq = (self._hist_seq + 1) & 4095
        sid = str(snowflake_id(past, _HIST_WORKER, self._hist_seq))
        users: dict[str, dict] = {}
        text, ents = self._content("", lang, burst_tag, users)
        data = self._base(sid, author, lang, past, text, ents, sid)
        data["created_at"] = _iso_seconds(past)
        return data

    def _retweet(self, sid: str, author: dict[str, Any], ms: int, burst_tag: str | None,
                 users: dict[str, dict], includes: dict[str, Any]) -> dict[str, Any]:
        orig = self._referenced(burst_tag, ms)
        o_author = self._v.user_by_id[orig["author_id"]]
        users[o_author["id"]] = o_author
        handle = o_author["username"]
        prefix = f"RT @{handle}: "
        full = prefix + orig["text"]
        text = full if len(full) <= 140 else full[:139] + "…"
        keep = len(text) if len(full) <= 140 else 139
        shift = len(prefix)
        ents: dict[str, list] = {"mentions": [{"start": 3, "end": 4 + len(handle),
                                               "username": handle, "id": o_author["id"]}]}
        for key, items in orig.get("entities", _NO_ENTITIES).items():
            kept = [{**e, "start": e["start"] + shift, "end": e["end"] + shift}
                    for e in items if e["end"] + shift <= keep]
            if kept:
                ents.setdefault(key, []).extend(kept)
        for m in ents["mentions"][1:]:  # the expansion names the users the RT text mentions
            users[m["id"]] = self._v.user_by_id[m["id"]]
        data = self._base(sid, author, orig["lang"], ms, text, ents, sid)
        data["referenced_tweets"] = [{"type": "retweeted", "id": orig["id"]}]
        pm = data["public_metrics"]
        pm["retweet_count"] = orig["public_metrics"]["retweet_count"] + 1
        pm["like_count"] = pm["reply_count"] = pm["quote_count"] = pm["impression_count"] = 0
        includes["tweets"] = [orig]
        return data

    def _reply(self, sid: str, author: dict[str, Any], lang: str, ms: int, burst_tag: str | None,
               users: dict[str, dict], includes: dict[str, Any]) -> dict[str, Any]:
        target = self._referenced(None, ms)
        t_author = self._v.user_by_id[target["author_id"]]
        users[t_author["id"]] = t_author
        prefix = f"@{t_author['username']} "
        text, ents = self._content(prefix, lang, burst_tag, users)
        ents.setdefault("mentions", []).insert(0, {
            "start": 0, "end": len(prefix) - 1, "username": t_author["username"],
            "id": t_author["id"]})
        data = self._base(sid, author, lang, ms, text, ents, target["conversation_id"])
        data["in_reply_to_user_id"] = t_author["id"]
        data["referenced_tweets"] = [{"type": "replied_to", "id": target["id"]}]
        includes["tweets"] = [target]
        return data

    def _quote(self, sid: str, author: dict[str, Any], lang: str, ms: int, burst_tag: str | None,
               users: dict[str, dict], includes: dict[str, Any]) -> dict[str, Any]:
        quoted = self._referenced(None, ms)
        q_author = self._v.user_by_id[quoted["author_id"]]
        users[q_author["id"]] = q_author
        text, ents = self._content("", lang, burst_tag, users)
        if self._rng.random() < _QUOTE_LINK:
            link = self._tco()
            start = len(text) + 1
            text = f"{text} {link}"
            ents.setdefault("urls", []).append({
                "start": start, "end": start + len(link), "url": link,
                "expanded_url": f"https://twitter.com/{q_author['username']}/status/{quoted['id']}",
                "display_url": f"twitter.com/{q_author['username']}/…"})
        data = self._base(sid, author, lang, ms, text, ents, sid)
        data["referenced_tweets"] = [{"type": "quoted", "id": quoted["id"]}]
        includes["tweets"] = [quoted]
        return data

    # --- text ----------------------------------------------------------------------------------

    def _tco(self) -> str:
        return "https://t.co/" + _b62(self._rng, 10)

    def _tag_form(self, tag: tuple[str, str, str]) -> str:
        r = self._rng.random()
        return tag[0] if r < 0.8 else tag[1] if r < 0.96 else tag[2]

    def _content(self, prefix: str, lang: str, burst_tag: str | None,
                 users: dict[str, dict]) -> tuple[str, dict[str, list]]:
        """`prefix` + text with hashtags, mentions, cashtags and a link; and their entities."""
        rnd, v = self._rng.random, self._v
        parts = [prefix]
        pos = len(prefix)
        ents: dict[str, list] = {}
        n_tags = v.hashtag_counts[int(rnd() * 32)]
        tags = [self._tag_form(v.tags[bisect_right(v.tag_cum, rnd() * v.tag_cum[-1])])
                for _ in range(n_tags)]
        if burst_tag is not None:
            tags.insert(int(rnd() * (len(tags) + 1)), burst_tag)
        if lang == "und":
            a, b = _EMOJI[int(rnd() * len(_EMOJI))], ""
        else:
            a, b = v.sentences[lang][int(rnd() * 400)]
        parts.append(a)
        pos += len(a)
        hashtags = []
        if tags and b and rnd() < 0.3:  # one hashtag mid-sentence
            tag = tags.pop()
            parts.append(f" #{tag} ")
            hashtags.append({"start": pos + 1, "end": pos + 2 + len(tag), "tag": tag})
            pos += len(tag) + 3
        elif b:
            parts.append(" ")
            pos += 1
        parts.append(b)
        pos += len(b)
        for tag in tags:
            parts.append(f" #{tag}")
            hashtags.append({"start": pos + 1, "end": pos + 2 + len(tag), "tag": tag})
            pos += len(tag) + 2
        if hashtags:
            ents["hashtags"] = hashtags
        if rnd() < _MENTION_SHARE:
            u = v.users[bisect_right(v.user_cum, rnd() * v.user_cum[-1])]
            users[u["id"]] = u
            h = u["username"]
            parts.append(f" @{h}")
            ents["mentions"] = [{"start": pos + 1, "end": pos + 2 + len(h), "username": h,
                                 "id": u["id"]}]
            pos += len(h) + 2
        if rnd() < _CASHTAG_SHARE:
            c = v.cashtags[bisect_right(v.cashtag_cum, rnd() * v.cashtag_cum[-1])]
            parts.append(f" ${c}")
            ents["cashtags"] = [{"start": pos + 1, "end": pos + 2 + len(c), "tag": c}]
            pos += len(c) + 2
        if rnd() < _URL_SHARE:
            link = self._tco()
            ents["urls"] = [{"start": pos + 1, "end": pos + 1 + len(link), "url": link,
                             **self._url_target()}]
            parts.append(" " + link)
        return "".join(parts), ents

    def _url_target(self) -> dict[str, str]:
        rnd, v = self._rng.random, self._v
        host = v.domains[bisect_right(v.domain_cum, rnd() * v.domain_cum[-1])]
        path = _b62(self._rng, 8)
        url = f"https://{host}/{path}"
        if rnd() < _SHORTENER_SHARE:
            short = f"{_SHORTENERS[int(rnd() * len(_SHORTENERS))]}/{path[:7]}"
            return {"expanded_url": f"https://{short}", "display_url": short, "unwound_url": url}
        display = f"{host.removeprefix('www.')}/{path}"
        return {"expanded_url": url, "display_url": display[:23] + "…" if len(display) > 24
                else display}


def generate(seed: int = 42, *, start_ms: int, count: int, rate: float,
             bursts: Sequence[Burst] = (), **kwargs: Any) -> Iterator[Message]:
    """`count` messages with event times from `start_ms` at `rate` per second (history backfill)."""
    source = SyntheticSource(seed, start_ms, rate, bursts=bursts, **kwargs)
    for _ in range(count):
        yield source.next_message()
