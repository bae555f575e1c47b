"""The fleet file's `deploy:` section: settings `homestack render` needs beyond the fleet itself."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..sizes import parse_size

_K8S_LABEL = r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class Deploy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = Field("homestack", pattern=r"^[a-z_][a-z0-9_-]*$", description="System user the services run as.")
    executable: str = Field(
        "/usr/local/bin/homestack", pattern=r"^/", description="The homestack command on the host (systemd units)."
    )
    config_dir: Path = Field(Path("/etc/homestack"), description="Where the rendered fleet file and secrets go.")
    state_dir: Path = Field(Path("/var/lib/homestack"), description="Writable state: logs, models, knowledge store.")
    memory_margin: float = Field(
        0.25, ge=0, le=4, description="Fraction added to the planned memory for limits (MemoryMax, resources)."
    )
    process_memory: Annotated[int, Field(gt=0)] = Field(
        256 * 1024**2, description="Memory of a homestack process itself, beside its runners (e.g. 256MiB)."
    )
    knowledge_memory: Annotated[int, Field(gt=0)] = Field(
        1024**3, description="Memory limit of the knowledge service (e.g. 1GiB)."
    )
    server_name: str = Field("homestack.example", description="nginx server_name (the edge's host name).")
    tls_certificate: Path = Field(Path("/etc/ssl/homestack/fullchain.pem"), description="nginx TLS certificate.")
    tls_certificate_key: Path = Field(Path("/etc/ssl/homestack/privkey.pem"), description="nginx TLS key.")
    https_port: int = Field(443, ge=1, le=65535, description="Port nginx serves TLS on.")
    admin_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="Networks (CIDR) that may reach /metrics and /admin through nginx.",
    )
    rate_limit: str = Field("10r/s", pattern=r"^[1-9][0-9]*r/[sm]$", description="nginx limit_req rate per client.")
    rate_burst: int = Field(20, ge=0, description="Requests above the rate a client may queue (nginx burst).")
    image: str = Field("homestack:0.1.0", description="Container image with homestack and its models.")
    qdrant_image: str = Field("qdrant/qdrant:v1.15.1", description="Qdrant server image, when qdrant_url is set.")
    qdrant_snapshot_hours: int = Field(
        24, ge=0, description="Hours between Qdrant snapshots (a divisor or multiple of 24; 0: none)."
    )
    qdrant_snapshots_kept: int = Field(7, ge=1, description="Qdrant snapshots kept; older ones are deleted.")
    namespace: str = Field("homestack", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="Kubernetes namespace.")
    node_labels: dict[str, dict[Annotated[str, Field(pattern=_K8S_LABEL)], str]] = Field(
        default_factory=dict, description="Per pinned model: node labels its pod must run on (Kubernetes)."
    )
    max_replicas: int = Field(4, ge=1, description="Most replicas of an on-demand model (Kubernetes HPA).")
    min_replicas: int = Field(
        1, ge=0, description="Fewest replicas of an on-demand model; 0 needs the HPAScaleToZero feature gate."
    )
    queue_target: float = Field(2, gt=0, description="Queued requests per replica the HPA aims for.")

    @field_validator("qdrant_snapshot_hours")
    @classmethod
    def _snapshot_hours(cls, value: int) -> int:
        # A schedule cron can say (Kubernetes CronJob): every N hours within a day, or every N days.
        if value and 24 % value and value % 24:
            raise ValueError("must divide 24 or be a multiple of 24 (e.g. 6, 24, 168)")
        return value

    @field_validator("process_memory", "knowledge_memory", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return parse_size(value)

    @field_validator("admin_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            try:
                ipaddress.ip_network(network)
            except ValueError:
                raise ValueError(f"{network!r} is not a network in CIDR form, e.g. 192.168.1.0/24") from None
        return networks
