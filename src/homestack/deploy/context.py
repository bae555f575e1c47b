"""What every deploy target renders from: the fleet file as written, its validated form and its capacity plan."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from ..config import DEFAULT_FLEET, FleetConfig
from ..config.deploy import Deploy
from ..errors import ConfigError
from ..planner.plan import CapacityPlan

GATEWAY_PORT = 8080
KNOWLEDGE_PORT = 8081
HEADER = "# Written by `homestack render {target}` from {source}; render again rather than edit.\n"


@dataclass(frozen=True)
class DeployContext:
    fleet: FleetConfig
    capacity: CapacityPlan
    source: str  # the fleet file's path, or DEFAULT_FLEET
    raw: dict[str, Any]  # the fleet file as written (the rendered fleet files start from it)

    @classmethod
    def build(cls, fleet: FleetConfig, capacity: CapacityPlan, source: str) -> "DeployContext":
        text = (files("homestack.config").joinpath("default.yaml").read_text() if source == DEFAULT_FLEET
                else Path(source).read_text(encoding="utf-8"))
        ctx = cls(fleet, capacity, source, yaml.safe_load(text) or {})
        unknown = [name for name in fleet.deploy.node_labels if name not in fleet.models]
        if unknown:
            raise ConfigError(f"{source}: deploy.node_labels: unknown model {unknown[0]!r}; models: "
                              f"{', '.join(fleet.models)}")
        return ctx

    @property
    def deploy(self) -> Deploy:
        return self.fleet.deploy

    def header(self, target: str) -> str:
        return HEADER.format(target=target, source=self.source)

    def with_margin(self, size: int) -> int:
        """A limit for ``size`` planned bytes: the margin on top, plus the homestack process itself."""
        return int(size * (1 + self.deploy.memory_margin)) + self.deploy.process_memory

    def model_memory(self, name: str) -> int:
        return self.capacity.models[name].total

    @property
    def resident_memory(self) -> int:
        """The most the runners hold together: the largest co-resident set of the plan."""
        return max((sum(self.model_memory(m) for m in names) for names in self.capacity.resident_sets), default=0)

    @property
    def local_models(self) -> list[str]:
        """Models with a runner on this host (remote ones only forward)."""
        return [name for name, plan in self.capacity.models.items() if plan.basis != "remote"]

    def fleet_yaml(self, target: str, **changes: Any) -> str:
        """The fleet file as written, with ``changes`` (dotted keys) applied, validated again."""
        data = copy.deepcopy(self.raw)
        data.pop("deploy", None)  # render settings; the services never read them
        for dotted, value in changes.items():
            *parents, key = dotted.split(".")
            node = data
            for part in parents:
                node = node.setdefault(part, {})
            if value is None:
                node.pop(key, None)
            else:
                node[key] = value
        try:
            FleetConfig.model_validate(data)
        except ValueError as exc:  # a bug here, not the user's: say so plainly
            raise ConfigError(f"rendering the {target} fleet file from {self.source} failed: {exc}") from None
        return self.header(target) + yaml.safe_dump(data, sort_keys=False)


def k8s_name(name: str) -> str:
    """A DNS-1123 label from a model name (lower case, dashes)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return cleaned[:50] or "model"


def mebibytes(size: int) -> int:
    """Whole MiB, rounded up (systemd writes them ``M``, Kubernetes ``Mi``)."""
    return -(-size // 1024**2)
