"""How each runner kind is started: argv, environment and version.

A launch plan is built once when the fleet is built, so a bad binary or model
reference is reported at start-up, not on the first request.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ..artifacts import check_reference, resolve_model
from ..config import CommandModel, EmbeddingsModel, FleetConfig, LlamaCppModel, ModelConfig, RemoteModel
from ..errors import ConfigError, HomestackError
from .binaries import find_llama_server, llama_server_version
from .llama_options import user_sets


@dataclass(frozen=True)
class LaunchPlan:
    kind: str
    version: str
    model_ref: str | None = None
    binary: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, name: str, spec: ModelConfig, port: int, model_path: Path | None) -> list[str]:
        if isinstance(spec, LlamaCppModel):
            return llama_cpp_argv(self.binary, name, spec, port, model_path)
        if isinstance(spec, EmbeddingsModel):
            return [
                sys.executable, "-m", "homestack.runners.embeddings_server",
                "--model", str(model_path), "--name", name, "--port", str(port),
            ]
        if isinstance(spec, CommandModel):
            fill = {"{port}": str(port), "{model_path}": str(model_path or "")}
            return [_fill(arg, fill) for arg in spec.command]
        raise AssertionError(f"{spec.runner} runners have no process")


def _fill(arg: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        arg = arg.replace(placeholder, value)
    return arg


def llama_cpp_argv(binary, name: str, spec: LlamaCppModel, port: int, model_path) -> list[str]:
    argv = [
        str(binary), "--model", str(model_path), "--alias", name,
        "--host", "127.0.0.1", "--port", str(port), "--parallel", str(spec.parallel),
        "--metrics",  # the gateway re-exports them on its own /metrics
    ]
    if spec.ctx_size is not None:
        argv += ["--ctx-size", str(spec.ctx_size)]
    if spec.cache_type_k:
        argv += ["--cache-type-k", spec.cache_type_k]
    if spec.cache_type_v:
        argv += ["--cache-type-v", spec.cache_type_v]
    # Memory must stay what the planner estimated, unless the user says otherwise: no --fit
    # (it rewrites unset options at start and costs ~0.4 s), no host-RAM prompt cache (up to
    # 8 GiB by default), and 2 SWA context checkpoints per slot (one prompt's worth) instead of 32.
    for option, flag, value in (("fit", "--fit", "off"), ("cache_ram_mib", "--cache-ram", "0"),
                               ("ctx_checkpoints", "--ctx-checkpoints", "2")):
        if not user_sets(option, spec.args, spec.env):
            argv += [flag, value]
    return argv + list(spec.args)


def plan_launch(name: str, spec: ModelConfig, fleet: FleetConfig) -> LaunchPlan:
    """Check what ``spec`` needs exists and record the runner's version."""
    model_ref = getattr(spec, "model", None)
    if model_ref is not None:
        problem = check_reference(model_ref)
        if problem:
            raise ConfigError(f"models.{name}.model: {problem}")
    if isinstance(spec, LlamaCppModel):
        try:
            binary = find_llama_server(spec.binary or fleet.llama_server)
        except ConfigError as exc:
            raise ConfigError(f"models.{name}: {exc.message}") from None
        version = llama_server_version(binary, fleet.data_dir / "cache")
        return LaunchPlan("llama.cpp", version, model_ref, binary, spec.env)
    if isinstance(spec, EmbeddingsModel):
        version = "sentence-transformers " + _dist_version("sentence-transformers")
        return LaunchPlan("embeddings", version, model_ref, env=spec.env)
    if isinstance(spec, CommandModel):
        return LaunchPlan("command", Path(spec.command[0]).name, model_ref, env=spec.env)
    assert isinstance(spec, RemoteModel)
    return LaunchPlan("remote", "remote")


def plan_fleet(fleet: FleetConfig, source: str) -> dict[str, LaunchPlan]:
    """Every model's launch plan; every problem at once, one line each naming ``source``."""
    plans, problems = {}, []
    for name, spec in fleet.models.items():
        try:
            plans[name] = plan_launch(name, spec, fleet)
        except HomestackError as exc:
            problems.append(f"{source}: {exc.message}")
    if problems:
        raise ConfigError("\n".join(problems))
    return plans


def _dist_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"the embeddings runner needs {dist}: pip install {dist}") from None


def model_path(plan: LaunchPlan, data_dir: Path) -> Path | None:
    return None if plan.model_ref is None else resolve_model(plan.model_ref, data_dir)
