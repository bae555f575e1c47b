"""The embeddings kind: a sentence-transformers model served by homestack's own small server."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ...errors import ConfigError
from .base import FleetSettings, Gpu, LaunchPlan, ProcessConfig, RunnerKind, checked_model

if TYPE_CHECKING:
    from ...planner.estimate import MemoryEstimate

_DIST = "sentence-transformers"
# The runner (python, torch 2.13 CPU, sentence-transformers) beyond its weights file:
# all-MiniLM-L6-v2 (87 MiB of weights) held 507 MiB after one short request and 569 MiB after
# a batch of 32 inputs of 256 tokens (its largest); fitted to the latter.
_TORCH_RUNTIME = 480 << 20


def llama_embeddings_argv(binary: Path, gguf: Path, name: str, port: int) -> list[str]:
    """llama-server serving a converted BERT model's mean-pooled embeddings.

    Slots of 512 tokens (BERT's longest input); a physical batch holds several chunks,
    and a non-causal model needs each input whole in one. No polling: on a shared
    machine spinning threads steal the cores they wait for.
    """
    return [str(binary), "--model", str(gguf), "--alias", name, "--host", "127.0.0.1", "--port", str(port),
            "--embedding", "--pooling", "mean", "--ctx-size", "8192", "--parallel", "16",
            "--batch-size", "2048", "--ubatch-size", "2048", "--poll", "0"]


class EmbeddingsModel(ProcessConfig):
    runner: Literal["embeddings"]
    model: str = Field(description="sentence-transformers model directory, or package:NAME.")


def estimate_embeddings(model_dir: Path) -> MemoryEstimate:
    """torch's resident runtime plus the weights it loads."""
    # Imported on use: the planner package imports the kinds registry.
    from ...planner.estimate import Components, MemoryEstimate

    files = [p for p in model_dir.rglob("*.safetensors")] or [
        p for suffix in ("*.bin", "*.pt", "*.pth") for p in model_dir.rglob(suffix)
    ]
    weights = sum(p.stat().st_size for p in files)
    return MemoryEstimate({"cpu": Components(weights=weights, overhead=_TORCH_RUNTIME)})


class Embeddings(RunnerKind):
    name = "embeddings"
    config = EmbeddingsModel

    def plan(self, name: str, spec: EmbeddingsModel, fleet: FleetSettings) -> LaunchPlan:
        model_ref = checked_model(name, spec.model)
        try:
            version = f"{_DIST} {metadata.version(_DIST)}"
        except metadata.PackageNotFoundError:
            raise ConfigError(f"the embeddings runner needs {_DIST}: pip install {_DIST}") from None
        return LaunchPlan(self, version, model_ref, env=spec.env)

    def argv(self, plan: LaunchPlan, name: str, spec: EmbeddingsModel, port: int, model_path: Path | None) -> list[str]:
        return [
            sys.executable, "-m", "homestack.runners.embeddings_server",
            "--model", str(model_path), "--name", name, "--port", str(port),
        ]

    def estimate(self, spec: EmbeddingsModel, plan: LaunchPlan, data_dir: Path, gpu: Gpu | None) -> MemoryEstimate:
        return estimate_embeddings(plan.model_path(data_dir))

    def operations(self, spec: EmbeddingsModel) -> frozenset[str]:
        return frozenset({"embeddings"})
