"""Retrieval metrics over ranked document ids, as BEIR and trec_eval define them.

``relevant`` maps a document id to its graded relevance (qrels score); a grade
above 0 counts as relevant. nDCG uses the grade as the gain (trec_eval's default).
"""

from __future__ import annotations

import math


def _hits(ranked: list[str], relevant: dict[str, int], k: int) -> int:
    return sum(1 for doc in ranked[:k] if relevant.get(doc, 0) > 0)


def recall_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    wanted = sum(1 for grade in relevant.values() if grade > 0)
    return _hits(ranked, relevant, k) / wanted if wanted else 0.0


def precision_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    return _hits(ranked, relevant, k) / k


def mrr_at(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    for rank, doc in enumerate(ranked[:k], 1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], 1))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, 1))
    return dcg / idcg if idcg else 0.0


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
