"""Sparse keyword vectors that score exactly like Okapi BM25 inside Qdrant.

BM25(q, d) = sum over query terms t of idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl)).
A chunk's vector holds the right-hand factor for each of its terms (saturated,
length-normalised term frequency against the collection's average chunk length);
Qdrant's IDF modifier multiplies in idf(t) = ln(1 + (N - n + 0.5) / (n + 0.5)) at
query time (Lucene's formula, the one `bm25s` uses by default); the query vector
gives each distinct term weight 1, so the dot product is the BM25 score.

Text becomes terms the same way at ingest and at query time: lowercased words of
two or more characters, English stopwords dropped (so a question phrased as a
sentence keeps only its content words), Snowball's English stemmer. Terms hash to
stable u32 indices (crc32).
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache

import Stemmer

K1, B = 1.2, 0.75
DEFAULT_AVG_TERMS = 90.0  # a full chunk of ~200 model tokens keeps about this many terms
_WORD = re.compile(r"(?u)\b\w\w+\b")
_STEMMER = Stemmer.Stemmer("english")

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def terms(text: str) -> list[str]:
    """Lowercased, stemmed words of ``text`` without stopwords, in order."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) < 40]


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
