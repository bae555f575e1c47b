"""Knowledge service benchmark (figures, not tests).

1. Ingest throughput (chunks/s) through `homestack kb`'s API next to the raw
   throughput of the same embedding model on the same texts, in the same
   batches, in the same run (ABBA order): the pipeline's overhead.
2. Hybrid search latency at 100,000 chunks (synthetic vectors) in Qdrant Edge.
3. `ask`: the latency split into retrieval, prompt building, time to first token
   and generation; retrieval plus glue = wall time minus the model's time.
4. Retrieval quality (nDCG@10, recall@100, MRR@10) per mode on public BEIR-format
   sets (`beir_sets.py`, or `--beir DIR`), next to `bm25s`, sentence-transformers
   and their plain RRF fusion computed in the same run (`retrieval_quality.py`).

Usage: python bench/knowledge.py [--gateway URL] [--files N] [--points N] [--asks N] [--only quality] [--sample N]
       [--beir DIR]
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import beir_sets  # noqa: E402
import retrieval_quality  # noqa: E402

from homestack.knowledge.client.http import KnowledgeClient
from homestack.knowledge.evaluation.metrics import percentile
from homestack.knowledge.ingest import sparse
from homestack.knowledge.ingest.pipeline import Document, prepare_chunks
from homestack.knowledge.ingest.tokens import load_counter
from homestack.knowledge.stores.base import SearchSpec, StorePoint, point_id
from homestack.knowledge.stores.edge import EdgeStore

_WORDS = ("robot arm gripper sensor motor torque joint shelf crate warehouse battery charge route map camera "
          "vision model lidar obstacle speed brake wheel axle chassis frame bolt weld paint inspection report "
          "schedule shift operator safety alarm light zone fence badge door lock key").split()


def _start(argv: list[str], env: dict[str, str], log: Path, banner: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"), stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = re.search(banner, log.read_text(errors="replace"))
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            sys.exit(f"bench: {argv[3]} exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    sys.exit(f"bench: {argv[3]} not ready: {log.read_text()[-2000:]}")


def _corpus(folder: Path, files: int) -> list[Path]:
    rng = random.Random(1)
    paths = []
    for i in range(files):
        sections = []
        for s in range(4):
            paragraphs = ["  ".join(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "."
                                    for _ in range(rng.randint(3, 7))) for _ in range(4)]
            sections.append(f"## Section {s}\n\n" + "\n\n".join(paragraphs))
        path = folder / f"doc{i:03d}.md"
        path.write_text(f"# Document {i}\n\n" + "\n\n".join(sections) + "\n")
        paths.append(path)
    return paths


def _raw_embeddings(gateway: str, texts: list[str], batch: int) -> float:
    """Chunks/s posting the texts straight to the gateway, as the pipeline batches them."""
    with httpx.Client(base_url=gateway, timeout=600) as http:
        started = time.perf_counter()
        for i in range(0, len(texts), batch):
            resp = http.post("/v1/embeddings", json={"model": "minilm-l6-v2", "input": texts[i:i + batch],
                                                     "encoding_format": "base64"})
            resp.raise_for_status()
        return len(texts) / (time.perf_counter() - started)


def _ingest(knowledge: str, collection: str, paths: list[Path]) -> tuple[float, int]:
    with httpx.Client(base_url=knowledge + "/v1/knowledge", timeout=600) as http:
        http.post("/collections", json={"name": collection}).raise_for_status()
        documents = [{"source": str(p), "content_base64": base64.b64encode(p.read_bytes()).decode()} for p in paths]
        started = time.perf_counter()
        resp = http.post(f"/collections/{collection}/documents", json={"documents": documents})
        resp.raise_for_status()
        return resp.json()["chunks"] / (time.perf_counter() - started), resp.json()["chunks"]


def bench_ingest(gateway: str, knowledge: str, folder: Path, files: int) -> dict:
    paths = _corpus(folder, files)
    counter = load_counter("minilm-l6-v2")
    meta = {"chunk_tokens": 200, "chunk_overlap": 40}
    texts = [text for p in paths for _, text, _ in prepare_chunks(counter, meta, Document(str(p), p.read_bytes(), "markdown"))]
    _raw_embeddings(gateway, texts[:128], 64)  # load the model and warm it up
    raw1 = _raw_embeddings(gateway, texts, 64)
    ingest1, chunks = _ingest(knowledge, "bench-a", paths)
    ingest2, _ = _ingest(knowledge, "bench-b", paths)
    raw2 = _raw_embeddings(gateway, texts, 64)
    raw, ingest = (raw1 + raw2) / 2, (ingest1 + ingest2) / 2
    return {"chunks": chunks, "texts": len(texts), "raw_chunks_per_s": [raw1, raw2], "ingest_chunks_per_s": [ingest1, ingest2],
            "overhead_pct": 100 * (1 - ingest / raw)}


def bench_search(folder: Path, points: int, queries: int) -> dict:
    rng = np.random.default_rng(0)
    words = [f"{w}{i}" for w in _WORDS for i in range(100)]  # ~5,000 terms
    store = EdgeStore(folder / "edge")
    store.create("big", {"dimensions": 384})
    started = time.perf_counter()
    for start in range(0, points, 1000):
        vectors = rng.standard_normal((1000, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        batch = []
        for i, vector in enumerate(vectors):
            text = " ".join(words[j] for j in rng.integers(0, len(words), 60))
            batch.append(StorePoint(point_id("bench", "h", start + i), vector.tolist(),
                                    sparse.document_vector(sparse.terms(text)),
                                    {"source": f"file{(start + i) // 50}", "hash": "h", "position": i % 50, "text": text}))
        store.upsert("big", batch)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    store.optimize("big")
    optimize_s = time.perf_counter() - started
    latencies = []
    for q in range(queries):
        vector = rng.standard_normal(384).astype(np.float32)
        vector /= np.linalg.norm(vector)
        text = " ".join(words[j] for j in rng.integers(0, len(words), 3))
        spec = SearchSpec("hybrid", 10, dense=vector.tolist(), sparse=sparse.query_vector(text))
        t = time.perf_counter()
        store.query("big", spec)
        latencies.append((time.perf_counter() - t) * 1000)
    store.close()
    latencies = latencies[10:]  # the first queries fault pages in
    return {"points": points, "load_s": load_s, "optimize_s": optimize_s, "queries": len(latencies),
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95), "p99_ms": percentile(latencies, 99)}


def bench_ask(knowledge: str, asks: int) -> dict:
    questions = [f"What does section {i % 4} of document {i} say about the robot arm?" for i in range(asks)]
    parts: dict[str, list[float]] = {"retrieval_ms": [], "prompt_ms": [], "ttft_ms": [], "generation_ms": [],
                                     "retrieval_plus_glue_ms": [], "wall_ms": [], "completion_tokens": []}
    with httpx.Client(base_url=knowledge + "/v1/knowledge", timeout=600) as http:
        http.post("/ask", json={"collection": "bench-a", "question": questions[0], "max_tokens": 4})  # warm up
        for question in questions:
            started = time.perf_counter()
            resp = http.post("/ask", json={"collection": "bench-a", "question": question})  # the default length
            wall = (time.perf_counter() - started) * 1000
            resp.raise_for_status()
            timings = resp.json()["timings"]
            for key in ("retrieval_ms", "prompt_ms", "ttft_ms", "generation_ms"):
                parts[key].append(timings[key])
            parts["wall_ms"].append(wall)
            parts["completion_tokens"].append((resp.json()["usage"] or {}).get("completion_tokens", 0))
            parts["retrieval_plus_glue_ms"].append(wall - timings["ttft_ms"] - timings["generation_ms"])
    return {key: {"p50": percentile(v, 50), "p95": percentile(v, 95)} for key, v in parts.items()}


def _set_size(folder: Path) -> tuple[int, int]:
    count = lambda path: sum(1 for line in path.open() if line.strip())  # noqa: E731
    return count(folder / "corpus.jsonl"), count(folder / "qrels" / "test.tsv") - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", help="a running gateway (default: start one with the default fleet)")
    parser.add_argument("--files", type=int, default=40, help="Markdown files to ingest (about 16 chunks each)")
    parser.add_argument("--points", type=int, default=100_000, help="synthetic chunks for the search benchmark")
    parser.add_argument("--queries", type=int, default=510, help="hybrid queries to time")
    parser.add_argument("--asks", type=int, default=20, help="questions for the ask latency split")
    parser.add_argument("--only", choices=["quality"], help="run only the retrieval quality part")
    parser.add_argument("--sample", type=int, help="score only this many queries per set (a fixed random choice; "
                                                  "every document is still indexed): a quicker, noisier run")
    parser.add_argument("--beir", action="append", type=Path, default=[],
                        help="a BEIR-format folder to evaluate as well (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="homestack-kb-bench-"))
    env = {**os.environ, "HOMESTACK_HOME": str(tmp / "home")}
    procs = []
    try:
        gateway = args.gateway
        if gateway is None:
            proc, gateway = _start([sys.executable, "-m", "homestack", "serve", "--port", "0", "--no-knowledge"], env,
                                   tmp / "gateway.log", r"homestack serving (http://\S+?)/v1 ")
            procs.append(proc)
        proc, knowledge = _start([sys.executable, "-m", "homestack", "knowledge", "serve", "--port", "0", "--no-auth",
                                  "--gateway", gateway], env, tmp / "knowledge.log", r"homestack knowledge serving (http://\S+) ")
        procs.append(proc)
        sets = [beir_sets.build(name, tmp / "sets") for name in beir_sets.SETS] + args.beir
        for folder in sets:
            table = retrieval_quality.evaluate_set(KnowledgeClient(knowledge, timeout=3600), folder, args.sample)
            documents, queries = _set_size(folder)
            retrieval_quality.print_table(folder.name, table, documents, min(queries, args.sample or queries))
        if args.only == "quality":
            return
        (tmp / "corpus").mkdir()
        ingest = bench_ingest(gateway, knowledge, tmp / "corpus", args.files)
        print(f"ingest: {ingest['chunks']} chunks; raw embeddings {ingest['raw_chunks_per_s'][0]:.1f} / "
              f"{ingest['raw_chunks_per_s'][1]:.1f} chunks/s, pipeline {ingest['ingest_chunks_per_s'][0]:.1f} / "
              f"{ingest['ingest_chunks_per_s'][1]:.1f} chunks/s (ABBA); overhead {ingest['overhead_pct']:.1f} % "
              f"(target <= 15 %)", flush=True)
        ask = bench_ask(knowledge, args.asks)
        print("ask (p50 / p95 ms): " + ", ".join(f"{k} {v['p50']:.1f} / {v['p95']:.1f}" for k, v in ask.items())
              + " (target: retrieval plus glue p95 <= 100 ms)", flush=True)
        search = bench_search(tmp, args.points, args.queries)
        print(f"hybrid search at {search['points']:,} chunks: p50 {search['p50_ms']:.2f} ms, p95 {search['p95_ms']:.2f} ms, "
              f"p99 {search['p99_ms']:.2f} ms over {search['queries']} queries (target p95 <= 20 ms); "
              f"load {search['load_s']:.0f} s, index build {search['optimize_s']:.0f} s", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
