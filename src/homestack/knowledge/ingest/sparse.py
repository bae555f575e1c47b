"""Sparse keyword vectors that score exactly like Okapi BM25 inside Qdrant.

BM25(q, d) = sum over query terms t of idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl)).
A chunk's vector holds the right-hand factor for each of its terms (saturated,
length-normalised term frequency against the collection's average chunk length);
Qdrant's IDF modifier multiplies in idf(t) = ln(1 + (N - n + 0.5) / (n + 0.5)) at
query time (Lucene's formula, the one `bm25s` uses by default); the query vector
gives each distinct term weight 1, so the dot product is the BM25 score.

Text becomes terms the same way at ingest and at query time: lowercased words of
two or more characters; stopwords dropped, Lucene's English list (the one `bm25s`
uses) plus the question words and pronouns a question phrased as a sentence adds
("how do I ...", "what does ..."); Snowball's English stemmer. A name joined by
underscores (``pthread_mutex_lock``) counts as itself and as each of its words, so
"lock a mutex" finds it. Each occurrence in a document counts once: a chunk's
vector leaves out the overlap it repeats from the previous chunk (``Chunk.lead``),
which would otherwise raise that text's term frequencies and document frequencies.
Terms hash to stable u32 indices (crc32).

``ENCODING`` names this recipe; a collection records the one its vectors were built
with (collections from before the field have 1: the NLTK stopword list, names kept
whole, overlaps counted twice). Their keyword search keeps working, since a query
only adds terms they lack, but scores like BM25 again only once re-ingested into a
new collection.
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache

import Stemmer

ENCODING = 2
K1, B = 1.2, 0.75
DEFAULT_AVG_TERMS = 60.0  # a full chunk of ~200 model tokens keeps about this many terms
_WORD = re.compile(r"(?u)\b\w\w+\b")
_MAX_WORD = 40  # longer "words" are hashes, base64 and the like
_STEMMER = Stemmer.Stemmer("english")

# Lucene's English stopwords, then what questions add. Words the NLTK list also drops ("up", "down",
# "off", "all", "between", "from") stay: in technical text they carry meaning ("shut down", "look up").
STOPWORDS = frozenset("""
a an and are as at be but by for if in into is it no not of on or such that the their then there these they
this to was will with
what which who whom whose why how when where do does did can could should would i me my we our you your
""".split())


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def terms(text: str) -> list[str]:
    """Lowercased, stemmed words of ``text`` without stopwords, in order; a snake_case name, then its parts."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS or len(word) >= _MAX_WORD:
            continue
        out.append(stem(word))
        parts = word.split("_")
        if len(parts) > 1:
            out.extend(stem(p) for p in parts if len(p) > 1 and p not in STOPWORDS)
    return out


def _index(term: str) -> int:
    return zlib.crc32(term.encode())


def document_vector(words: list[str], avg_terms: float = DEFAULT_AVG_TERMS) -> tuple[list[int], list[float]]:
    """BM25's saturated, length-normalised term frequencies of a chunk's terms, keyed by hashed term."""
    counts: dict[int, int] = {}
    for w in words:
        key = _index(w)
        counts[key] = counts.get(key, 0) + 1
    norm = K1 * (1 - B + B * len(words) / avg_terms)
    return list(counts), [tf * (K1 + 1) / (tf + norm) for tf in counts.values()]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """Each distinct query term once, weight 1: the IDF modifier weighs them."""
    keys = list(dict.fromkeys(_index(w) for w in terms(text)))
    return keys, [1.0] * len(keys)
