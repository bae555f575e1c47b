"""The embeddings kind: a sentence-transformers model served for /v1/embeddings.

Three engines run the same model (cosine to sentence-transformers' vectors on the
benchmark's chunks, `bench/embeddings.py`, in brackets):

- ``onnxruntime`` (the default): homestack's own small server
  (`runners/embeddings_server.py`) over ONNX Runtime, on an int8 ONNX graph that
  `homestack prepare` (or the first start) writes from the model's safetensors
  (`runners/bert_onnx.py`), with a float32 one beside it for short texts (queries);
  BERT models, no torch (min 0.9925, mean 0.9964). 2.15x sentence-transformers'
  chunks per second on the 2-core development machine (README, Benchmark);
- ``sentence-transformers``: the same server over torch, which `make serve` does not
  install (1.00000);
- ``llama.cpp``: llama-server on a GGUF written the same way (`runners/bert_gguf.py`);
  BERT models, no torch (1.00000). Fewer chunks per second than torch there.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ...errors import ConfigError
from ..binaries import find_llama_server, llama_server_version
from .base import FleetSettings, Gpu, LaunchPlan, ProcessConfig, RunnerKind, checked_model

if TYPE_CHECKING:
    from ...planner.estimate import MemoryEstimate

_DIST = "sentence-transformers"
# The runner (python, torch 2.13 CPU, sentence-transformers) beyond its weights file:
# all-MiniLM-L6-v2 (87 MiB of weights) held 507 MiB after one short request and 569 MiB after
# a batch of 32 inputs of 256 tokens (its largest); fitted to the latter.
_TORCH_RUNTIME = 480 << 20
# llama-server beyond the GGUF's weights: its compute buffers for a 2,048-token physical batch.
_LLAMA_RUNTIME = 160 << 20
# The ONNX runner (python, ONNX Runtime) beyond model.onnx: 402 MiB after a request of 64 inputs of
# 256 tokens with the int8 graph (65 MiB), 418 MiB with the float32 one (86 MiB).
_ORT_RUNTIME = 340 << 20
_RUNTIME = {"sentence-transformers": _TORCH_RUNTIME, "onnxruntime": _ORT_RUNTIME, "llama.cpp": _LLAMA_RUNTIME}
# The model files each engine loads: the first pattern that finds any in the directory it is given.
_WEIGHTS = ("*.onnx", "*.safetensors", "*.bin", "*.pt", "*.pth")


class EmbeddingsModel(ProcessConfig):
    runner: Literal["embeddings"]
    model: str = Field(description="sentence-transformers model directory, or package:NAME.")
    engine: Literal["onnxruntime", "sentence-transformers", "llama.cpp"] = Field(
        "onnxruntime", description="onnxruntime: an int8 ONNX graph; llama.cpp: llama-server on a GGUF, each written "
                                   "from the model at prepare (BERT models, no torch); sentence-transformers: torch.")


def llama_embeddings_argv(binary: Path, gguf: Path, name: str, port: int) -> list[str]:
    """llama-server serving a converted BERT model's mean-pooled embeddings.

    Slots of 512 tokens (BERT's longest input); a physical batch holds several chunks,
    and a non-causal model needs each input whole in one. No polling: on a shared
    machine spinning threads steal the cores they wait for.
    """
    return [str(binary), "--model", str(gguf), "--alias", name, "--host", "127.0.0.1", "--port", str(port),
            "--embedding", "--pooling", "mean", "--ctx-size", "8192", "--parallel", "16",
            "--batch-size", "2048", "--ubatch-size", "2048", "--poll", "0"]


def server_argv(engine: str, model_path: Path, name: str, port: int) -> list[str]:
    """homestack's own embeddings server running ``engine`` (sentence-transformers or onnxruntime)."""
    return [sys.executable, "-m", "homestack.runners.embeddings_server", "--engine", engine,
            "--model", str(model_path), "--name", name, "--port", str(port)]


def _to_gguf(model_dir: Path, data_dir: Path) -> Path:
    from ..bert_gguf import converted

    return converted(model_dir, data_dir)


def _to_onnx(model_dir: Path, data_dir: Path) -> Path:
    from ..bert_onnx import converted

    return converted(model_dir, data_dir)


def estimate_embeddings(model_path: Path, engine: str) -> MemoryEstimate:
    """The engine's resident runtime plus the weights it loads (a GGUF file, or a model directory)."""
    # Imported on use: the planner package imports the kinds registry.
    from ...planner.estimate import Components, MemoryEstimate

    if model_path.is_file():
        weights = model_path.stat().st_size
    else:
        files = next((found for pattern in _WEIGHTS if (found := list(model_path.rglob(pattern)))), [])
        weights = sum(p.stat().st_size for p in files)
    return MemoryEstimate({"cpu": Components(weights=weights, overhead=_RUNTIME[engine])})


# What to say beside "pip install ..." when an engine's packages are missing: an unpinned torch is CUDA's.
_INSTALL_NOTE = {"sentence-transformers": " (install a CPU or CUDA torch first: pip alone pulls CUDA's, several GB)"}


def _python_engine(name: str, engine: str, needs: tuple[str, ...]) -> str:
    """The version of ``engine`` (the first of ``needs``), or a ConfigError naming what to install."""
    missing = [dist for dist in needs if _installed(dist) is None]
    if missing:
        raise ConfigError(f"models.{name}: engine {engine} needs {', '.join(missing)}: "
                          f"pip install {' '.join(missing)}{_INSTALL_NOTE.get(engine, '')}")
    return f"{needs[0]} {_installed(needs[0])}"


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# engine -> the distributions its runner imports (the first names its version), and how the model is converted
_PYTHON_ENGINES = {
    "sentence-transformers": ((_DIST,), None),
    "onnxruntime": (("onnxruntime", "onnx"), _to_onnx),
}


class Embeddings(RunnerKind):
    name = "embeddings"
    config = EmbeddingsModel
    ready_line = re.compile(r"^embeddings: loaded ")

    def plan(self, name: str, spec: EmbeddingsModel, fleet: FleetSettings) -> LaunchPlan:
        model_ref = checked_model(name, spec.model)
        if spec.engine == "llama.cpp":
            try:
                binary = find_llama_server(fleet.llama_server)
            except ConfigError as exc:
                raise ConfigError(f"models.{name}: {exc.message}; or set engine: onnxruntime") from None
            version = "llama.cpp " + llama_server_version(binary, fleet.data_dir / "cache")
            return LaunchPlan(self, version, model_ref, binary, env=spec.env, convert=_to_gguf)
        needs, convert = _PYTHON_ENGINES[spec.engine]
        version = _python_engine(name, spec.engine, needs)
        return LaunchPlan(self, version, model_ref, env=spec.env, convert=convert)

    def argv(self, plan: LaunchPlan, name: str, spec: EmbeddingsModel, port: int, model_path: Path | None) -> list[str]:
        if spec.engine == "llama.cpp":
            return llama_embeddings_argv(plan.binary, model_path, name, port)
        return server_argv(spec.engine, model_path, name, port)

    def estimate(self, spec: EmbeddingsModel, plan: LaunchPlan, data_dir: Path, gpu: Gpu | None) -> MemoryEstimate:
        return estimate_embeddings(plan.model_path(data_dir), spec.engine)

    def operations(self, spec: EmbeddingsModel) -> frozenset[str]:
        return frozenset({"embeddings", "rerank"})  # rerank: by cosine similarity of its embeddings
