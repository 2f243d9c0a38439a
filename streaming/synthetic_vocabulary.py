"""The synthetic source's vocabulary: languages, words, hashtags, names, domains, places, and the
seeded lookup tables (Zipf-weighted, one lookup per draw) that the generator samples from.

Why apart from streaming/synthetic.py: this is data, and the code that turns it into lookup tables
once per vocabulary seed; the generator (SyntheticSource) only draws from it.
"""

# Word lists are space-separated strings (readable, compact) in many scripts (intended):
# ruff: noqa: SIM905, RUF001

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Iterable
from functools import lru_cache
from itertools import accumulate
from typing import Any

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
