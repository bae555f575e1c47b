"""Sparse keyword vectors: our own tokenizer and light English stemmer.

Terms hash to stable u32 indices (crc32), values are BM25's saturated term
frequency; Qdrant's IDF modifier supplies the inverse document frequency at
query time, so a sparse search scores like BM25.
"""

from __future__ import annotations

import re
import zlib

_WORD = re.compile(r"\w+", re.UNICODE)
_K1, _B = 1.2, 0.75
_AVG_TERMS = 90.0  # a typical chunk of ~200 model tokens holds about this many kept terms

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())

# Longest first; each maps a suffix to its replacement when the stem stays long enough.
_SUFFIXES = (
    ("ational", "ate"), ("ization", "ize"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"),
    ("tional", "tion"), ("ations", "ate"), ("ation", "ate"), ("ments", "ment"), ("ness", ""), ("ings", ""),
    ("ing", ""), ("edly", ""), ("ions", ""), ("ion", ""), ("ies", "y"), ("ied", "y"), ("sses", "ss"), ("ly", ""), ("ed", ""), ("es", ""), ("s", ""),
)
_VOWEL = re.compile(r"[aeiouy]")


def stem(word: str) -> str:
    """Strip one common English suffix; words of three letters or fewer stay as they are."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix):
            base = word[: -len(suffix)]
            if len(base) < 3 or not _VOWEL.search(base) or (suffix == "s" and base.endswith(("s", "u", "i"))):
                continue
            if suffix.startswith("ion") and not base.endswith(("t", "s")):  # connection -> connect, not onion -> on
                continue
            stemmed = base + replacement
            # running -> runn -> run; but keep "ss" and "ll" (class, spell)
            if not replacement and len(stemmed) > 3 and stemmed[-1] == stemmed[-2] and stemmed[-1] not in "lsz":
                stemmed = stemmed[:-1]
            return stemmed[:-1] + "y" if stemmed.endswith("i") else stemmed  # happiness, happy -> happy
    return word


def terms(text: str) -> list[str]:
    """Lowercased, stemmed words of ``text`` without stopwords, in order."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) < 40]


def _index(term: str) -> int:
    return zlib.crc32(term.encode())


def document_vector(text: str) -> tuple[list[int], list[float]]:
    """BM25-saturated term frequencies, keyed by hashed term."""
    words = terms(text)
    counts: dict[int, int] = {}
    for w in words:
        key = _index(w)
        counts[key] = counts.get(key, 0) + 1
    norm = _K1 * (1 - _B + _B * len(words) / _AVG_TERMS)
    return list(counts), [tf * (_K1 + 1) / (tf + norm) for tf in counts.values()]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """Each distinct query term once, weight 1: the IDF modifier weighs them."""
    keys = list(dict.fromkeys(_index(w) for w in terms(text)))
    return keys, [1.0] * len(keys)
