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

# Word lists are space-separated strings (readable, compact) in many scripts (intended):
# ruff: noqa: SIM905, RUF001

from __future__ import annotations

import random
import time
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Any

import orjson

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

_LANG_WEIGHTS = {"en": 42, "ja": 16, "es": 10, "pt": 7, "ar": 5, "fr": 4, "ko": 3, "tr": 3,
                 "de": 2, "hi": 2, "in": 2}
_WORDS = {
    "en": "the a to and of in is it you that for on my this was with just but so be at not have "
          "are what all me your like get now can out if about one up day time today new good "
          "love people know think really going great see best game live news watch thread must "
          "read finally happy week year never always check tonight morning vibes honestly team "
          "data build shipped release launch update free big win".split(),
    "ja": "今日は 本当に 楽しかった ありがとう 最高 新しい 動画 配信 見てね みんな 明日 よろしく "
          "お願いします ライブ 写真 更新しました めっちゃ かわいい 頑張ります お疲れ様 です "
          "ます 発売 決定 おはよう 嬉しい 感動 公開 情報 楽しみ 参加 チケット 当選 ゲーム "
          "アニメ 新曲 まじで".split(),
    "es": "el la de que y en los se del las por un para con no una su al lo como más pero sus "
          "hoy gracias mañana partido gol vamos increíble mejor nuevo noticias amigos vida "
          "feliz siempre nunca ahora todo bien mundo".split(),
    "pt": "o a de que e do da em um para com não uma os no se na por mais hoje obrigado amanhã "
          "jogo gol vamos incrível melhor novo notícias amigos vida feliz sempre nunca agora "
          "tudo bem mundo galera".split(),
    "ar": "في من على أن إلى هذا اليوم الله شكرا جدا جميل الحمد لله صباح الخير كل عام وانتم "
          "بخير مبروك الفوز المباراة عاجل خبر جديد الناس".split(),
    "fr": "le la de et les des en un une du est pour que qui pas sur dans avec ce il plus "
          "aujourd'hui merci demain match but allez incroyable meilleur nouveau vie heureux "
          "toujours jamais maintenant tout bien monde".split(),
    "ko": "오늘 정말 감사합니다 최고 사랑해 너무 좋아요 보고 싶어요 노래 무대 축하해 우리 "
          "응원 컴백 영상 공개 드디어 행복 팬들".split(),
    "tr": "bir ve bu da için çok ne ben sen gibi daha bugün teşekkürler yarın maç gol harika "
          "en iyi yeni haber hayat mutlu her zaman şimdi".split(),
    "de": "der die und in den von zu das mit sich des auf für ist im nicht ein eine heute "
          "danke morgen spiel tor geil neue nachrichten leben immer jetzt alles gut".split(),
    "hi": "आज बहुत अच्छा धन्यवाद भारत जय हिंद नमस्ते क्रिकेट मैच देखो कल नया खबर "
          "जीवन खुश हमेशा अभी सब ठीक दुनिया".split(),
    "in": "yang dan di ini itu dengan untuk tidak dari dalam akan pada juga hari terima kasih "
          "besok pertandingan gol keren terbaik baru berita hidup senang selalu sekarang".split(),
}
_NO_SPACE = frozenset({"ja"})
_EMOJI = "😂 ❤️ 🔥 🙏 😍 👏 🎉 💯 😭 ✨ 👀 🚀 🤣 💪 😊 🥺 ⚽ 🏀 🎶 📢".split()
_HASHTAG_BASE = (
    "AI MachineLearning Python ClickHouse Kafka DataEngineering BigData NBA NFL WorldCup "
    "PremierLeague ChampionsLeague F1 Bitcoin Crypto ETH NFT Web3 Election Breaking News "
    "Climate ClimateChange Music NewMusic KPop BTS BLACKPINK Anime ONEPIECE Gaming Nintendo PS5 "
    "Xbox Netflix Oscars Grammys Fashion Travel Photography Food Fitness Motivation "
    "MondayMotivation ThrowbackThursday FridayFeeling Love Art Design Startup Marketing SEO "
    "100DaysOfCode JavaScript Rust golang OpenSource Linux CyberSecurity Tech iPhone Apple "
    "Google Tesla SpaceX NASA Science Health MentalHealth Ukraine Brasil Mexico LaLiga "
    "RealMadrid Barcelona Flamengo Corinthians BBB 拡散希望 プレゼント企画 相互フォロー "
    "イラスト ゲーム実況 新曲 ポケモン 原神 السعودية الهلال رمضان عاجل Eid Ramadan Diwali IPL "
    "Cricket Bollywood TeamIndia Paris2024 Olympics JO2024 LeMans Tour Eurovision Coachella "
    "Superbowl Wimbledon RolandGarros Formula1 MotoGP UFC Boxing WWE Marvel StarWars DC "
    "HarryPotter Disney Pixar Spotify TikTok YouTube Twitch Streamer VTuber Cosplay Manga "
    "Kdrama Cdrama Telenovela Futebol Fútbol Béisbol LigaMX Copa Libertadores Serie Bundesliga "
    "Ligue1 PSG OM Galatasaray Fenerbahçe Beşiktaş 독도 방탄소년단 뉴진스 세븐틴 Hindi भारत "
    "Jakarta Indonesia Bali Tokyo Osaka Seoul Madrid Lisboa SaoPaulo RioDeJaneiro BuenosAires "
    "Paris Berlin London NYC LA Chicago Toronto Sydney Dubai Riyadh Cairo Istanbul Mumbai Delhi "
    "Weather Earthquake Storm Flood Wildfire Vaccine Economy Inflation Stocks Markets Jobs "
    "Remote DevOps Kubernetes Docker Cloud AWS Azure GCP Database Postgres Redis Analytics "
    "DataScience DeepLearning LLM ChatGPT OpenAI GenAI Robotics Quantum Blockchain Fintech "
    "Gadgets Android Samsung Pixel Windows MacOS Coding Programming Developer WebDev React "
    "Vue Svelte NodeJS TypeScript Java Kotlin Swift Flutter GameDev IndieDev Unity Unreal "
    "Minecraft Fortnite Valorant LeagueOfLegends Pokemon Zelda Mario Elden Books Reading "
    "Writing Poetry Podcast Film Movies TV Comedy Memes Cats Dogs Pets Nature Hiking Yoga "
    "Coffee Vegan Recipe Cooking Wine Beer Style Beauty Makeup Skincare Wedding Family "
    "Parenting Education Teachers Students University Graduation Jobs Hiring Career"
).split()
_TAG_PREFIXES = ("Team", "Save", "Vote", "Stop", "Go", "ILove", "Happy", "National", "World",
                 "Global", "Free", "StandWith", "Ask", "Live", "Support", "Visit", "Watch")
_TAG_SUFFIXES = ("2024", "2025", "Day", "News", "Live", "Fans", "Week", "Update", "Challenge",
                 "Official", "TV", "Hype", "Talk", "Life", "Nation", "Daily", "Tips", "Community",
                 "Forever", "Season")
_FIRST = ("ana maria john james mike sarah emma olivia liam noah lucas mateo sofia valentina "
          "yuki haruto sakura ren aiko minji jisoo hyun omar fatima ahmed layla youssef mehmet "
          "ayse emre pierre camille louis chloe hans lena felix priya arjun rahul ananya budi "
          "siti dewi joao pedro gabriel julia diego carlos lucia alex sam max chris kim lee "
          "jordan taylor").split()
_LAST = ("smith jones silva santos garcia lopez martin bernard muller schmidt tanaka sato "
         "suzuki kim park lee choi yilmaz kaya demir khan ali hassan sharma patel singh "
         "wijaya nguyen rossi ferrari costa oliveira souza perez gomez diaz brown wilson").split()
_HANDLE_WORDS = ("data dev code tech news daily official real the its just fan club hq live "
                 "world sports music art photo film game play crypto stock market bot feed info "
                 "update media tv radio press report times post hub lab studio").split()
_DOMAINS = (
    "youtube.com www.youtube.com m.youtube.com youtu.be instagram.com www.instagram.com "
    "tiktok.com www.tiktok.com vm.tiktok.com github.com www.nytimes.com nytimes.com "
    "www.bbc.co.uk bbc.co.uk www.bbc.com www.theguardian.com www.washingtonpost.com "
    "www.reuters.com apnews.com www.cnn.com edition.cnn.com www.foxnews.com www.aljazeera.com "
    "www.lemonde.fr www.elpais.com elpais.com g1.globo.com www.uol.com.br www.folha.uol.com.br "
    "www3.nhk.or.jp news.yahoo.co.jp www.asahi.com www.chosun.com www.hurriyet.com.tr "
    "www.spiegel.de www.zeit.de timesofindia.indiatimes.com www.ndtv.com www.kompas.com "
    "www.detik.com www.abc.net.au www.smh.com.au www.cbc.ca open.spotify.com music.apple.com "
    "www.twitch.tv medium.com substack.com dev.to news.ycombinator.com www.reddit.com "
    "en.wikipedia.org ja.wikipedia.org es.wikipedia.org www.linkedin.com www.facebook.com "
    "www.amazon.com amzn.to www.amazon.co.jp www.ebay.com store.steampowered.com "
    "www.nintendo.com www.playstation.com www.theverge.com techcrunch.com www.wired.com "
    "arstechnica.com www.bloomberg.com www.ft.com www.wsj.com www.economist.com "
    "www.forbes.com www.businessinsider.com www.espn.com www.marca.com www.lequipe.fr "
    "www.goal.com www.skysports.com www.nba.com www.nfl.com www.fifa.com olympics.com "
    "www.imdb.com www.netflix.com www.change.org www.gofundme.com docs.google.com "
    "drive.google.com www.dropbox.com zoom.us www.eventbrite.com clickhouse.com kafka.apache.org"
).split()
_SHORTENERS = ("bit.ly", "buff.ly", "ow.ly", "tinyurl.com", "dlvr.it")
_GEN_TLDS = ("com", "com", "com", "net", "org", "io", "co", "co.uk", "com.br", "co.jp", "com.au",
             "de", "fr", "es", "jp", "in", "co.id", "com.tr", "com.mx", "news", "app", "dev")
_CASHTAG_BASE = ("AAPL TSLA NVDA MSFT AMZN GOOGL GOOG META NFLX AMD INTC BTC ETH SOL DOGE "
                 "XRP ADA SPY QQQ GME AMC PLTR COIN HOOD SHOP UBER ABNB DIS BA JPM GS V MA PYPL SQ "
                 "NIO BABA TSM ASML SONY TM F GM RIVN LCID SNOW DDOG NET CRWD ZS MDB ORCL CRM "
                 "ADBE").split()
_SOURCES = (("Twitter for iPhone", 34), ("Twitter for Android", 30), ("Twitter Web App", 22),
            ("TweetDeck Web App", 4), ("Twitter for iPad", 3), ("IFTTT", 2), ("Buffer", 2),
            ("Hootsuite Inc.", 1), ("dlvr.it", 1), ("Zapier.com", 1))
_RULES = (("tech", 30), ("sports", 20), ("news", 18), ("music-and-fandom", 14), ("crypto", 6),
          ("lang-sample", 8), ("brand-mentions", 4))
_PLACES = {  # lang -> (id, name, full_name, country_code, country)
    "en": (("01a9a39529b27f36", "Manhattan", "Manhattan, NY", "US", "United States"),
           ("3b77caf94bfc81fe", "Los Angeles", "Los Angeles, CA", "US", "United States"),
           ("457b4814b4240d87", "London", "London, England", "GB", "United Kingdom"),
           ("0073b76548e5984f", "Sydney", "Sydney, New South Wales", "AU", "Australia")),
    "ja": (("0da1e1f5a3a2a6a6", "Shibuya", "Shibuya-ku, Tokyo", "JP", "Japan"),),
    "es": (("206ca7b5f6b0a0a8", "Madrid", "Madrid, España", "ES", "España"),
           ("25530ba03b7d90c6", "Ciudad de México", "Ciudad de México, México", "MX", "México")),
    "pt": (("68e019afec7d0ba5", "São Paulo", "São Paulo, Brasil", "BR", "Brasil"),),
    "ar": (("00f1a2b3c4d5e6f7", "Riyadh", "Riyadh, Kingdom of Saudi Arabia", "SA",
            "Kingdom of Saudi Arabia"),),
    "fr": (("09f6a7a60e1a5c3f", "Paris", "Paris, France", "FR", "France"),),
    "ko": (("0a8c2e5b5a9c1d2e", "Seoul", "Seoul, Republic of Korea", "KR", "Republic of Korea"),),
    "tr": (("5e02a0f0d91c76d2", "Istanbul", "Istanbul, Türkiye", "TR", "Türkiye"),),
    "de": (("3078869807f9dd36", "Berlin", "Berlin, Deutschland", "DE", "Deutschland"),),
    "hi": (("1c3d2e4f5a6b7c8d", "Mumbai", "Mumbai, India", "IN", "India"),),
    "in": (("2d4e6f8a0b1c3d5e", "Jakarta", "Jakarta, Indonesia", "ID", "Indonesia"),),
}
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_BYTES = bytes(ord(_B62[i % 62]) for i in range(256))  # slight bias to the first 8: fine
_N_USERS, _N_TAGS, _N_DOMAINS, _N_CASHTAGS = 5000, 3000, 400, 300
_NO_ENTITIES: dict[str, list] = {}


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


def _zipf_cum(n: int, s: float, q: float) -> list[float]:
    """Cumulative Zipf-Mandelbrot weights 1/(rank+q)^s, for `bisect` draws."""
    return list(accumulate(1.0 / (k + q) ** s for k in range(1, n + 1)))


def _table(pairs: Iterable[tuple[Any, float]], bits: int) -> list[Any]:
    """A 2**bits lookup table whose uniform draw follows the weights (coarse, for short lists)."""
    pairs = list(pairs)
    total = sum(w for _, w in pairs)
    size = 1 << bits
    cum = list(accumulate(w / total for _, w in pairs))
    return [pairs[min(bisect_right(cum, (i + 0.5) / size), len(pairs) - 1)][0]
            for i in range(size)]


def _b62(rng: random.Random, width: int) -> str:
    """`width` random base-62 characters, via one bytes.translate (a Python loop costs 4x more)."""
    return rng.randbytes(width).translate(_B62_BYTES).decode()


class _Vocab:
    """The fixed world a source draws from; built once per `vocab_seed` (about 0.1 s)."""

    def __init__(self, vocab_seed: int) -> None:
        rng = random.Random(vocab_seed)
        self.tags = self._hashtags(rng)
        self.tag_cum = _zipf_cum(len(self.tags), 1.05, 2.0)
        self.users, user_langs = self._users(rng)
        self.lang_of = {u["id"]: lang for u, lang in zip(self.users, user_langs, strict=True)}
        self.user_by_id = {u["id"]: u for u in self.users}
        self.user_cum = _zipf_cum(len(self.users), 1.0, 20.0)
        self.domains = self._domains(rng)
        self.domain_cum = _zipf_cum(len(self.domains), 1.1, 1.0)
        self.cashtags = self._cashtags(rng)
        self.cashtag_cum = _zipf_cum(len(self.cashtags), 1.2, 1.0)
        self.sentences = {lang: self._sentences(rng, lang) for lang in _WORDS}
        self.langs = list(_LANG_WEIGHTS)
        self.lang_table = _table(_LANG_WEIGHTS.items(), 8)
        self.source_table = _table(_SOURCES, 7)
        rule_ids = {tag: str(1166916266197536768 + i) for i, (tag, _) in enumerate(_RULES)}
        self.rule_table = [[{"id": rule_ids[t], "tag": t}] for t in _table(_RULES, 6)]
        self.places = {lang: [{"id": p[0], "name": p[1], "full_name": p[2], "country_code": p[3],
                               "country": p[4], "place_type": "city"} for p in places]
                       for lang, places in _PLACES.items()}
        self.hashtag_counts = [0] * 12 + [1] * 9 + [2] * 6 + [3] * 3 + [4, 5]  # 32 slots
        self.small_counts = [int(rng.paretovariate(1.3)) - 1 for _ in range(1024)]

    @staticmethod
    def _hashtags(rng: random.Random) -> list[tuple[str, str, str]]:
        """(display form, lower case, upper case) by Zipf rank; base words rank first."""
        base = list(dict.fromkeys(_HASHTAG_BASE))
        rng.shuffle(base)
        combos = [p + b for p in _TAG_PREFIXES for b in base if b.isascii()]
        combos += [b + s for b in base for s in _TAG_SUFFIXES]
        rng.shuffle(combos)
        seen: set[str] = set()
        tags = []
        for t in base + combos:
            if t.lower() not in seen and len(tags) < _N_TAGS:
                seen.add(t.lower())
                tags.append((t, t.lower(), t.upper()))
        return tags

    @staticmethod
    def _users(rng: random.Random) -> tuple[list[dict[str, str]], list[str]]:
        """User dicts as in `includes.users`, and each one's own language."""
        users: list[dict[str, str]] = []
        langs: list[str] = []
        seen: set[str] = set()
        lang_table = _table(_LANG_WEIGHTS.items(), 8)
        while len(users) < _N_USERS:
            first, last, word = rng.choice(_FIRST), rng.choice(_LAST), rng.choice(_HANDLE_WORDS)
            form = rng.randrange(5)
            handle = (f"{first}{last}", f"{first}_{last}", f"{word}_{first}",
                      f"{first}{rng.randrange(1, 9999)}", f"{word}{last}{rng.randrange(99)}")[form]
            handle = handle[:15]
            if handle.lower() in seen:
                continue
            seen.add(handle.lower())
            if rng.random() < 0.5:
                handle = handle.capitalize()
            name = (f"{first.capitalize()} {last.capitalize()}" if form != 2
                    else f"{word.capitalize()} {first.capitalize()} {rng.choice(_EMOJI)}")
            uid = (rng.randrange(10**5, 4 * 10**9) if rng.random() < 0.6
                   else rng.randrange(7 * 10**17, 19 * 10**17))
            users.append({"id": str(uid), "name": name, "username": handle})
            langs.append(lang_table[rng.randrange(256)])
        return users, langs

    @staticmethod
    def _domains(rng: random.Random) -> list[str]:
        hosts = list(_DOMAINS)
        while len(hosts) < _N_DOMAINS:
            a, b = rng.choice(_HANDLE_WORDS), rng.choice(_HANDLE_WORDS + _LAST)
            host = f"{'www.' if rng.random() < 0.5 else ''}{a}{b}.{rng.choice(_GEN_TLDS)}"
            if host not in hosts:
                hosts.append(host)
        return hosts

    @staticmethod
    def _cashtags(rng: random.Random) -> list[str]:
        tags = list(_CASHTAG_BASE)
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        while len(tags) < _N_CASHTAGS:
            t = "".join(rng.choice(letters) for _ in range(rng.randrange(2, 5)))
            if t not in tags:
                tags.append(t)
        return tags

    @staticmethod
    def _sentences(rng: random.Random, lang: str) -> list[tuple[str, str]]:
        """400 two-part sentences (a hashtag may go between the parts)."""
        words, sep = _WORDS[lang], ("" if lang in _NO_SPACE else " ")
        out = []
        for _ in range(400):
            n = rng.randrange(3, 12)
            ws = [rng.choice(words) for _ in range(n)]
            if rng.random() < 0.3:
                ws.append(rng.choice(_EMOJI))
            cut = rng.randrange(1, n)
            a, b = sep.join(ws[:cut]), sep.join(ws[cut:])
            out.append((a[:1].upper() + a[1:], b))
        return out


@lru_cache(maxsize=4)
def _vocab(vocab_seed: int) -> _Vocab:
    return _Vocab(vocab_seed)


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
        return tid.encode(), orjson.dumps(doc), int(tid)

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
        return sid.encode(), orjson.dumps(doc), tid

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
