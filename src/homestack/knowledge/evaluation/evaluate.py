"""`homestack kb eval`: retrieval quality on a BEIR dataset, through the running service.

The corpus is ingested into a scratch collection (deleted afterwards), each
document as one source named by its id; every query runs in each mode, chunks
are folded into documents by their first appearance, and the metrics are
averaged over the queries that have judgements.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from ...errors import HomestackError
from . import metrics
from ..client.http import KnowledgeClient

MODES = ("dense", "sparse", "hybrid")
_DOCS_PER_REQUEST = 500


def _jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise HomestackError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                raise HomestackError(f"{path}:{number}: not a JSON line") from None
            if not isinstance(row, dict) or "_id" not in row:
                raise HomestackError(f"{path}:{number}: each {what} line needs an \"_id\"")
            rows.append(row)
    return rows


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise HomestackError(f"{path}: cannot read the qrels: {exc.strerror}") from None
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(lines, 1):
        parts = line.split("\t")
        if number == 1 and parts[0] == "query-id" or not line.strip():
            continue
        try:
            query, doc, grade = parts[0], parts[1], int(parts[2])
        except (IndexError, ValueError):
            raise HomestackError(f"{path}:{number}: expected query-id<TAB>corpus-id<TAB>score") from None
        qrels.setdefault(query, {})[doc] = grade
    return qrels


def run_eval(client: KnowledgeClient, corpus_path: Path, queries_path: Path, qrels_path: Path, k: int = 10) -> dict:
    corpus = _jsonl(corpus_path, "corpus")
    queries = {q["_id"]: q["text"] for q in _jsonl(queries_path, "queries")}
    qrels = {q: docs for q, docs in load_qrels(qrels_path).items() if q in queries}
    if not qrels:
        raise HomestackError(f"{qrels_path}: no judgement matches a query in {queries_path}")
    collection = f"eval-{uuid.uuid4().hex[:8]}"
    client.json("POST", "/collections", {"name": collection})
    try:
        started = time.perf_counter()
        chunks = 0
        for start in range(0, len(corpus), _DOCS_PER_REQUEST):
            documents = [{"source": str(d["_id"]), "format": "text",
                          "text": "\n\n".join(p for p in (d.get("title"), d.get("text")) if p)}
                         for d in corpus[start:start + _DOCS_PER_REQUEST]]
            chunks += client.json("POST", f"/collections/{collection}/documents", {"documents": documents})["chunks"]
        ingest_s = time.perf_counter() - started
        depth = max(k, 10)
        report = {"collection": collection, "documents": len(corpus), "chunks": chunks, "queries": len(qrels),
                  "k": k, "ingest_seconds": ingest_s, "modes": {}}
        for mode in MODES:
            report["modes"][mode] = _evaluate_mode(client, collection, mode, queries, qrels, k, depth)
        return report
    finally:
        client.json("DELETE", f"/collections/{collection}")


def _evaluate_mode(client, collection, mode, queries, qrels, k, depth) -> dict[str, float]:
    sums = {f"recall@{k}": 0.0, f"precision@{k}": 0.0, "mrr@10": 0.0, "ndcg@10": 0.0}
    latencies = []
    for query_id, relevant in qrels.items():
        started = time.perf_counter()
        results = client.json("POST", "/search", {"collection": collection, "query": queries[query_id],
                                                  "mode": mode, "k": depth * 3})["results"]
        latencies.append((time.perf_counter() - started) * 1000)
        ranked = list(dict.fromkeys(r["source"] for r in results))[:depth]  # chunks folded into documents
        sums[f"recall@{k}"] += metrics.recall_at(ranked, relevant, k)
        sums[f"precision@{k}"] += metrics.precision_at(ranked, relevant, k)
        sums["mrr@10"] += metrics.mrr_at(ranked, relevant, 10)
        sums["ndcg@10"] += metrics.ndcg_at(ranked, relevant, 10)
    out = {name: total / len(qrels) for name, total in sums.items()}
    for p in (50, 95, 99):
        out[f"latency_p{p}_ms"] = metrics.percentile(latencies, p)
    return out


def print_report(report: dict) -> None:
    print(f"{report['documents']} documents ({report['chunks']} chunks, ingested in {report['ingest_seconds']:.1f} s), "
          f"{report['queries']} queries")
    names = list(next(iter(report["modes"].values())))
    print("mode     " + "  ".join(f"{n:>14}" for n in names))
    for mode, values in report["modes"].items():
        print(f"{mode:<8} " + "  ".join(f"{values[n]:>14.4f}" if "latency" not in n else f"{values[n]:>14.1f}"
                                       for n in names))
