"""The embeddings kind: a sentence-transformers model served for /v1/embeddings.

Two engines run the same model to the same vectors (cosine 1.00000 against
sentence-transformers on the benchmark's chunks, `bench/embeddings.py`):

- ``sentence-transformers`` (the default): homestack's own small server over torch
  (`runners/embeddings_server.py`);
- ``llama.cpp``: llama-server on a GGUF that `homestack prepare` (or the first start)
  writes from the model's safetensors (`runners/bert_gguf.py`); BERT models, no torch.
  Not the default: on the 2-core development machine it embedded fewer chunks per
  CPU-second than torch (README, Benchmark).
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


class EmbeddingsModel(ProcessConfig):
    runner: Literal["embeddings"]
    model: str = Field(description="sentence-transformers model directory, or package:NAME.")
    engine: Literal["sentence-transformers", "llama.cpp"] = Field(
        "sentence-transformers", description="sentence-transformers: torch; llama.cpp: llama-server on a GGUF "
                                             "written from the model at prepare (BERT models, no torch).")


def llama_embeddings_argv(binary: Path, gguf: Path, name: str, port: int) -> list[str]:
    """llama-server serving a converted BERT model's mean-pooled embeddings.

    Slots of 512 tokens (BERT's longest input); a physical batch holds several chunks,
    and a non-causal model needs each input whole in one. No polling: on a shared
    machine spinning threads steal the cores they wait for.
    """
    return [str(binary), "--model", str(gguf), "--alias", name, "--host", "127.0.0.1", "--port", str(port),
            "--embedding", "--pooling", "mean", "--ctx-size", "8192", "--parallel", "16",
            "--batch-size", "2048", "--ubatch-size", "2048", "--poll", "0"]


def _to_gguf(model_dir: Path, data_dir: Path) -> Path:
    from ..bert_gguf import converted

    return converted(model_dir, data_dir)


def estimate_embeddings(model_path: Path) -> MemoryEstimate:
    """The engine's resident runtime plus the weights it loads (a GGUF file, or a model directory)."""
    # Imported on use: the planner package imports the kinds registry.
    from ...planner.estimate import Components, MemoryEstimate

    if model_path.is_file():
        return MemoryEstimate({"cpu": Components(weights=model_path.stat().st_size, overhead=_LLAMA_RUNTIME)})
    files = [p for p in model_path.rglob("*.safetensors")] or [
        p for suffix in ("*.bin", "*.pt", "*.pth") for p in model_path.rglob(suffix)
    ]
    weights = sum(p.stat().st_size for p in files)
    return MemoryEstimate({"cpu": Components(weights=weights, overhead=_TORCH_RUNTIME)})


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
                raise ConfigError(f"models.{name}: {exc.message}; or set engine: sentence-transformers") from None
            version = "llama.cpp " + llama_server_version(binary, fleet.data_dir / "cache")
            return LaunchPlan(self, version, model_ref, binary, env=spec.env, convert=_to_gguf)
        try:
            version = f"{_DIST} {metadata.version(_DIST)}"
        except metadata.PackageNotFoundError:
            raise ConfigError(f"the embeddings runner needs {_DIST}: pip install {_DIST}") from None
        return LaunchPlan(self, version, model_ref, env=spec.env)

    def argv(self, plan: LaunchPlan, name: str, spec: EmbeddingsModel, port: int, model_path: Path | None) -> list[str]:
        if spec.engine == "llama.cpp":
            return llama_embeddings_argv(plan.binary, model_path, name, port)
        return [
            sys.executable, "-m", "homestack.runners.embeddings_server",
            "--model", str(model_path), "--name", name, "--port", str(port),
        ]

    def estimate(self, spec: EmbeddingsModel, plan: LaunchPlan, data_dir: Path, gpu: Gpu | None) -> MemoryEstimate:
        return estimate_embeddings(plan.model_path(data_dir))

    def operations(self, spec: EmbeddingsModel) -> frozenset[str]:
        return frozenset({"embeddings", "rerank"})  # rerank: by cosine similarity of its embeddings
