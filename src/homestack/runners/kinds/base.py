"""What every runner kind provides, and the config keys all kinds share.

A kind is one module in this package: a config model (tagged by ``runner:``)
and a ``RunnerKind`` subclass, listed once in ``KINDS``. The fleet schema, the
launcher, the planner, the scheduler and the gateway ask the kind; none of
them switches on a kind's name.

Nothing here imports the fleet schema (which imports this package to build
its union): fleet-wide settings arrive as ``FleetSettings``, plain attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ...artifacts import check_reference, resolve_model
from ...errors import ConfigError
from ...sizes import ByteSize

if TYPE_CHECKING:
    from ...planner.estimate import MemoryEstimate


class KindConfig(BaseModel):
    """The keys every model has, whatever its runner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aliases: list[str] = Field(
        default_factory=list,
        description="Other names clients may use; glob patterns (claude-*) match any name not listed exactly.",
    )
    ttl: float | None = Field(
        None, ge=0, description="Seconds idle before unloading; 0 never unloads; default: default_ttl."
    )
    pinned: bool = Field(False, description="Start with the gateway and never unload.")
    max_concurrency: int | None = Field(
        None, ge=1, description="Requests forwarded at once; more wait in line."
    )
    startup_timeout: float | None = Field(
        None, gt=0, description="Seconds to wait for the health check; default: timeouts.startup."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the runner.")
    memory: ByteSize | None = Field(
        None, description="Memory the runner holds (e.g. 1.5GiB); replaces the estimate. Needed to plan command runners."
    )
    max_output_tokens: int | None = Field(
        None, ge=1, description="Caps max_tokens a request asks for (larger asks are capped, not refused)."
    )


class ProcessConfig(KindConfig):
    """A runner homestack starts as a child process serving HTTP on 127.0.0.1."""

    health_path: str = Field("/health", pattern=r"^/", description="Answers 200 when ready.")


class FleetSettings(Protocol):
    """The fleet-wide settings a kind reads at plan time (a FleetConfig has them)."""

    @property
    def data_dir(self) -> Path: ...

    @property
    def llama_server(self) -> str | None: ...


class Gpu(Protocol):
    """The GPU the planner considers placing a runner on (a planner Device)."""

    @property
    def id(self) -> str: ...  # "gpu0", "gpu1"...

    @property
    def total(self) -> int: ...  # bytes


@dataclass(frozen=True)
class LaunchPlan:
    """What start-up found for one model: its kind, version, model reference, binary, environment."""

    kind: RunnerKind
    version: str
    model_ref: str | None = None
    binary: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    draft_path: Path | None = None  # llama.cpp: the speculative draft model, resolved at plan time
    # The resolved model and the data directory -> the file the runner reads (e.g. a GGUF
    # written once from a safetensors model); None: the resolved model as it is.
    convert: Callable[[Path, Path], Path] | None = None

    def argv(self, name: str, spec: KindConfig, port: int, model_path: Path | None) -> list[str]:
        return self.kind.argv(self, name, spec, port, model_path)

    def model_path(self, data_dir: Path) -> Path | None:
        """The model file or directory, assembling (or converting) a shipped one if needed."""
        return None if self.model_ref is None else self.kind.model_path(self, data_dir)


def checked_model(name: str, ref: str | None) -> str | None:
    """``ref`` if it names a model that exists; a ConfigError naming the key if not. Reads nothing."""
    problem = check_reference(ref) if ref is not None else None
    if problem:
        raise ConfigError(f"models.{name}.model: {problem}")
    return ref


class RunnerKind:
    """One runner kind. Subclass it in its own module and add the instance to ``KINDS``.

    Only ``name``, ``config`` and ``plan`` are required; the rest default to a
    process with no slot limit, no metrics and no estimate.
    """

    name: ClassVar[str]  # the fleet file's `runner:` value
    config: ClassVar[type[KindConfig]]  # its model: `runner: Literal[name]` tags the schema's union
    metrics_path: ClassVar[str | None] = None  # its Prometheus endpoint, re-exported by the gateway
    gpu: ClassVar[bool] = False  # the planner may place it on one GPU (estimate() is then given that GPU)
    # A line its output shows only once its API answers: the runner is ready when it comes, with no
    # health check (that poll remains for a runner whose version words it otherwise).
    ready_line: ClassVar[re.Pattern[str] | None] = None
    # Seconds it gets to exit after SIGTERM once idle; 0: it has nothing to save, SIGKILL at once (a swap
    # then waits for no clean-up).
    stop_grace: ClassVar[float] = 5.0
    # Runner paths (under /v1) it serves itself; the gateway translates other APIs to chat completions.
    serves: ClassVar[frozenset[str]] = frozenset({"/chat/completions", "/completions", "/embeddings"})
    # The body field naming the slot (prompt cache) a request runs on, and the runner paths that honour it.
    slot_field: ClassVar[str | None] = None
    slot_paths: ClassVar[frozenset[str]] = frozenset()

    def plan(self, name: str, spec: KindConfig, fleet: FleetSettings) -> LaunchPlan:
        """Check now what the runner will need (binary, model reference) and find its version."""
        raise NotImplementedError

    def model_path(self, plan: LaunchPlan, data_dir: Path) -> Path:
        """The local file or directory for ``plan.model_ref`` (set), in the form this kind's runner reads."""
        path = resolve_model(plan.model_ref, data_dir)
        return path if plan.convert is None else plan.convert(path, data_dir)

    def argv(self, plan: LaunchPlan, name: str, spec: KindConfig, port: int, model_path: Path | None) -> list[str]:
        """The process to start: it serves the OpenAI API on 127.0.0.1:``port``, under /v1."""
        raise AssertionError(f"{self.name} runners have no process")

    def attach_url(self, spec: KindConfig) -> str | None:
        """The /v1 base URL of an API that is already running; None: a process is started."""
        return None

    def health_path(self, spec: KindConfig) -> str | None:
        """The GET that answers 200 once the runner is ready; None (an attached API only): no check."""
        return spec.health_path if isinstance(spec, ProcessConfig) else None

    def estimate(self, spec: KindConfig, plan: LaunchPlan, data_dir: Path, gpu: Gpu | None) -> MemoryEstimate | None:
        """Memory the runner will hold, on ``gpu`` (seen as its only GPU) or the CPU alone.

        None: the kind cannot tell, so only the model's ``memory:`` key plans it.
        """
        return None

    def slots(self, spec: KindConfig) -> int | None:
        """Requests the runner serves at once (the scheduler's default limit); None: no limit."""
        return None

    def slot_affinity(self, spec: KindConfig) -> bool:
        """Whether the gateway keeps each conversation on the slot holding its prompt (needs ``slot_field``)."""
        return False

    def context_tokens(self, spec: KindConfig) -> int | None:
        """Tokens one request may hold (prompt and answer); None: unknown."""
        return None

    def api_key(self, spec: KindConfig) -> str | None:
        """Sent upstream as ``Authorization: Bearer`` with every request."""
        return None

    def upstream_model(self, name: str, spec: KindConfig) -> str | None:
        """The ``model`` the runner must be sent (the gateway rewrites others to it); None: it takes any."""
        return None

    def warnings(self, name: str, spec: KindConfig) -> list[str]:
        """Settings that work but are likely wrong, for ``homestack check`` (one line each)."""
        return []

    def operations(self, spec: KindConfig) -> frozenset[str] | None:
        """What it can do (an ``Operation.capability``: chat, text_completion, embeddings; and vision: it takes
        images); None: anything."""
        return None

    def lacks(self, spec: KindConfig, plan: LaunchPlan, data_dir: Path, capability: str) -> str | None:
        """Why this model cannot serve ``capability`` though its kind does (read from its files); None: it can."""
        return None

    def speculative(self, spec: KindConfig) -> str | None:
        """Its speculative decoding mode (drafted and accepted tokens in its metrics); None: it does not speculate."""
        return None
