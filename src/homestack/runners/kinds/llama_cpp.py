"""The llama.cpp kind: llama-server on a GGUF file, its memory estimated from the file's header."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ...artifacts import check_reference, resolve_model
from ...errors import ConfigError
from ..binaries import find_llama_server, llama_server_version
from ..llama_options import CacheType, user_sets
from ..speculative import Speculative, speculative_argv
from .base import FleetSettings, Gpu, LaunchPlan, ProcessConfig, RunnerKind, checked_model

if TYPE_CHECKING:
    from ...planner.estimate import MemoryEstimate

_EMBEDDING_FLAGS = {"--embedding", "--embeddings"}
_RERANK_FLAGS = {"--rerank", "--reranking"}
# A multimodal projector makes llama-server see images; -hf fetches the repository's own, if it has one.
_VISION_FLAGS = {"-mm", "--mmproj", "-mmu", "--mmproj-url", "-hf", "-hfr", "--hf-repo"}
_VISION_ENV = {"LLAMA_ARG_MMPROJ", "LLAMA_ARG_MMPROJ_URL", "LLAMA_ARG_HF_REPO"}


class LlamaCppModel(ProcessConfig):
    runner: Literal["llama.cpp"]
    model: str = Field(description="GGUF file path, or package:NAME for a shipped model.")
    ctx_size: int | None = Field(None, ge=64, description="Context size in tokens (--ctx-size).")
    parallel: int = Field(1, ge=1, description="Parallel slots (--parallel).")
    slot_affinity: bool = Field(
        True, description="Keep each conversation on the slot that holds its prompt (with parallel > 1), "
        "so its next turn reuses the prompt cache.",
    )
    cache_type_k: CacheType | None = Field(None, description="KV cache type for K (--cache-type-k).")
    cache_type_v: CacheType | None = Field(None, description="KV cache type for V (--cache-type-v).")
    args: list[str] = Field(default_factory=list, description="Extra llama-server arguments.")
    binary: str | None = Field(None, description="llama-server to run; default: the global llama_server.")
    reranker: bool = Field(
        False, description="A reranking model: started with --reranking, it answers /v1/rerank and nothing else."
    )

    @model_validator(mode="after")
    def _reranker_flag(self) -> "LlamaCppModel":
        # The key, not a bare flag in args, says what the model serves (a reranker serves no chat).
        if _RERANK_FLAGS.intersection(self.args):
            raise ValueError("do not pass --reranking in args; set reranker: true")
        if self.reranker and _EMBEDDING_FLAGS.intersection(self.args):
            raise ValueError("a reranker (reranker: true) cannot also serve embeddings; drop --embedding from args")
        return self
    speculative: Speculative | None = Field(
        None, description="Speculative decoding: a draft model (type: draft-simple) or a draft-free n-gram mode."
    )


def llama_cpp_argv(binary, name: str, spec: LlamaCppModel, port: int, model_path, draft_path=None) -> list[str]:
    argv = [
        str(binary), "--model", str(model_path), "--alias", name,
        "--host", "127.0.0.1", "--port", str(port), "--parallel", str(spec.parallel),
        "--metrics",  # the gateway re-exports them on its own /metrics
    ]
    if spec.reranker:
        argv.append("--reranking")
    if spec.ctx_size is not None:
        argv += ["--ctx-size", str(spec.ctx_size)]
    if spec.cache_type_k:
        argv += ["--cache-type-k", spec.cache_type_k]
    if spec.cache_type_v:
        argv += ["--cache-type-v", spec.cache_type_v]
    if spec.speculative is not None:
        argv += speculative_argv(spec.speculative, draft_path)
    # Memory must stay what the planner estimated, unless the user says otherwise: no --fit
    # (it rewrites unset options at start and costs ~0.4 s), no host-RAM prompt cache (up to
    # 8 GiB by default), and 2 SWA context checkpoints per slot (one prompt's worth) instead of 32.
    # And threads that sleep when waiting for work (--poll 0, against llama.cpp's 50): spinning ones
    # take the cores the gateway and the other runners need. On 2 cores, SmolLM2 through the gateway
    # wrote 85.8 tokens/s against 80.7 with one request at a time, 113.3 against 99.9 with two.
    for option, flag, value in (("fit", "--fit", "off"), ("cache_ram_mib", "--cache-ram", "0"),
                               ("ctx_checkpoints", "--ctx-checkpoints", "2"), ("poll", "--poll", "0")):
        if not user_sets(option, spec.args, spec.env):
            argv += [flag, value]
    return argv + list(spec.args)


def estimate_llama_cpp(spec: LlamaCppModel, model_path: Path, cache_dir: Path | None, gpus: int = 0,
                       draft_path: Path | None = None) -> MemoryEstimate:
    """What llama-server will hold for ``spec`` with ``gpus`` GPUs (layers split evenly), its draft model included."""
    # Imported on use: the planner package imports the kinds registry.
    from ...planner.estimate import estimate_from_settings, server_settings, with_draft
    from ...planner.gguf import read_gguf_info

    info = read_gguf_info(model_path, cache_dir)
    argv = llama_cpp_argv(Path("llama-server"), "model", spec, 0, model_path, draft_path)
    settings = server_settings(argv[1:], spec.env)
    estimate = estimate_from_settings(info, settings, gpus)
    if draft_path is None:
        return estimate
    return with_draft(estimate, read_gguf_info(draft_path, cache_dir), settings, gpus)


class LlamaCpp(RunnerKind):
    name = "llama.cpp"
    config = LlamaCppModel
    metrics_path = "/metrics"
    gpu = True
    ready_line = re.compile(r"\bmodel loaded$|\blistening on http")
    stop_grace = 0.0  # an idle llama-server holds nothing: its clean-up only delays the next load
    serves = RunnerKind.serves | {"/messages", "/messages/count_tokens", "/rerank"}
    slot_field = "id_slot"
    slot_paths = frozenset({"/chat/completions", "/completions"})  # its /messages ignores id_slot

    def plan(self, name: str, spec: LlamaCppModel, fleet: FleetSettings) -> LaunchPlan:
        model_ref = checked_model(name, spec.model)
        try:
            binary = find_llama_server(spec.binary or fleet.llama_server)
        except ConfigError as exc:
            raise ConfigError(f"models.{name}: {exc.message}") from None
        version = llama_server_version(binary, fleet.data_dir / "cache")
        return LaunchPlan(self, version, model_ref, binary, spec.env, _draft_path(name, spec, fleet.data_dir))

    def argv(self, plan: LaunchPlan, name: str, spec: LlamaCppModel, port: int, model_path: Path | None) -> list[str]:
        return llama_cpp_argv(plan.binary, name, spec, port, model_path, plan.draft_path)

    def estimate(self, spec: LlamaCppModel, plan: LaunchPlan, data_dir: Path, gpu: Gpu | None) -> MemoryEstimate:
        from ...planner.estimate import MemoryEstimate

        path = plan.model_path(data_dir)
        if gpu is None:
            return estimate_llama_cpp(spec, path, data_dir / "cache", draft_path=plan.draft_path)
        estimate = estimate_llama_cpp(spec, path, data_dir / "cache", gpus=1, draft_path=plan.draft_path)
        # The runner sees only this GPU (as its device 0): name it by its real index.
        devices = {gpu.id if d == "gpu0" else d: c for d, c in estimate.devices.items()}
        return MemoryEstimate(devices, estimate.layers, estimate.gpu_layers)

    def context_tokens(self, spec: LlamaCppModel) -> int | None:
        # Each of the parallel slots holds an equal share of --ctx-size.
        return None if spec.ctx_size is None else spec.ctx_size // spec.parallel

    def slot_affinity(self, spec: LlamaCppModel) -> bool:
        return spec.slot_affinity

    def slots(self, spec: LlamaCppModel) -> int:
        return spec.parallel

    def operations(self, spec: LlamaCppModel) -> frozenset[str]:
        # Started with --embedding(s) or --reranking, llama-server serves embeddings or reranking only;
        # else neither.
        if spec.reranker:
            return frozenset({"rerank"})
        if _EMBEDDING_FLAGS.intersection(spec.args):
            return frozenset({"embeddings"})
        sees = bool(_VISION_FLAGS.intersection(spec.args) or _VISION_ENV.intersection(spec.env)) \
            and "--no-mmproj" not in spec.args
        return frozenset({"chat", "text_completion", "infill", *(("vision",) if sees else ())})

    def lacks(self, spec: LlamaCppModel, plan: LaunchPlan, data_dir: Path, capability: str) -> str | None:
        # Imported on use: the planner package imports the kinds registry.
        from ...planner.gguf import read_gguf_info

        if capability == "infill" and not read_gguf_info(plan.model_path(data_dir), data_dir / "cache").fill_in_middle:
            return "its GGUF has no fill-in-the-middle tokens (prefix, suffix and middle, e.g. <fim_prefix>)"
        return None

    def speculative(self, spec: LlamaCppModel) -> str | None:
        return spec.speculative.type if spec.speculative is not None else None


def _draft_path(name: str, spec: LlamaCppModel, data_dir: Path) -> Path | None:
    """The draft model's file, checked and resolved now so a wrong reference fails at check time."""
    if spec.speculative is None or spec.speculative.draft_model is None:
        return None
    problem = check_reference(spec.speculative.draft_model)
    if problem:
        raise ConfigError(f"models.{name}.speculative.draft_model: {problem}")
    return resolve_model(spec.speculative.draft_model, data_dir)
