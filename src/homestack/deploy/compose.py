"""A Docker Compose project: the gateway, the knowledge service, Prometheus, Grafana and, when the fleet
uses a Qdrant server, Qdrant; named volumes for state and health checks for each."""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from ..observe.assets import ASSETS
from .context import GATEWAY_PORT, KNOWLEDGE_PORT, DeployContext, mebibytes
from .monitoring import render_prometheus, shipped_alerts
from .qdrant_snapshots import snapshot_script

PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"
GRAFANA_IMAGE = "grafana/grafana:12.1.0"
QDRANT_PORT = 6333
_STATE = "/var/lib/homestack"
_FLEET = "/etc/homestack/fleet.yaml"


def _http_check(url: str) -> dict[str, Any]:
    """A health check with the Python every homestack image has (no curl needed)."""
    code = f"import urllib.request; urllib.request.urlopen('{url}', timeout=5)"
    return {"test": ["CMD", "python3", "-c", code], "interval": "15s", "timeout": "6s", "retries": 5,
            "start_period": "60s"}


def _wget_check(url: str) -> dict[str, Any]:
    """Prometheus and Grafana images carry busybox wget."""
    return {"test": ["CMD", "wget", "-q", "-O", "/dev/null", url], "interval": "15s", "timeout": "5s", "retries": 5}


def _homestack(ctx: DeployContext, argv: list[str], memory: int) -> dict[str, Any]:
    return {
        "image": ctx.deploy.image,
        "command": ["homestack", *argv, "--config", _FLEET],
        "restart": "unless-stopped",
        "environment": {"HOMESTACK_HOME": _STATE, "PYTHONUNBUFFERED": "1"},
        "env_file": [{"path": "homestack.env", "required": False}],
        "volumes": [f"./fleet.yaml:{_FLEET}:ro", f"homestack-state:{_STATE}"],
        "mem_limit": f"{mebibytes(memory)}m",
    }


def render(ctx: DeployContext) -> dict[str, str]:
    fleet = ctx.fleet
    open_access = [] if fleet.auth_enabled else ["--no-auth"]  # reachable from the host's loopback only
    gateway = _homestack(ctx, ["serve", "--host", "0.0.0.0", "--port", str(GATEWAY_PORT), *open_access],
                         ctx.with_margin(ctx.resident_memory))
    gateway["ports"] = [f"127.0.0.1:{GATEWAY_PORT}:{GATEWAY_PORT}"]
    gateway["healthcheck"] = _http_check(f"http://127.0.0.1:{GATEWAY_PORT}/health")
    services: dict[str, Any] = {"gateway": gateway}
    changes: dict[str, Any] = {"host": "0.0.0.0", "port": GATEWAY_PORT, "data_dir": _STATE}
    if fleet.knowledge.enabled:
        knowledge = _homestack(ctx, ["knowledge", "serve", "--host", "0.0.0.0", "--port", str(KNOWLEDGE_PORT),
                                     "--no-auth"], ctx.deploy.knowledge_memory)  # only the gateway reaches it
        knowledge["depends_on"] = {"gateway": {"condition": "service_started"}}
        knowledge["healthcheck"] = _http_check(f"http://127.0.0.1:{KNOWLEDGE_PORT}/health")
        services["knowledge"] = knowledge
        changes.update({"knowledge.supervise": False, "knowledge.host": "knowledge", "knowledge.port": KNOWLEDGE_PORT,
                        "knowledge.gateway_url": f"http://gateway:{GATEWAY_PORT}"})
        if fleet.knowledge.qdrant_url:
            changes["knowledge.qdrant_url"] = f"http://qdrant:{QDRANT_PORT}"
            services["qdrant"] = {
                "image": ctx.deploy.qdrant_image,
                "restart": "unless-stopped",
                "volumes": ["qdrant-storage:/qdrant/storage", "qdrant-snapshots:/qdrant/snapshots"],
                # the image has bash but neither curl nor wget
                "healthcheck": {"test": ["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{QDRANT_PORT}"],
                                "interval": "15s", "timeout": "5s", "retries": 5},
            }
            knowledge["depends_on"]["qdrant"] = {"condition": "service_healthy"}
            if ctx.deploy.qdrant_snapshot_hours:
                services["qdrant-snapshots"] = _snapshots(ctx)
    services["prometheus"] = {
        "image": PROMETHEUS_IMAGE,
        "restart": "unless-stopped",
        "volumes": ["./prometheus:/etc/prometheus:ro", "prometheus-data:/prometheus"],
        "ports": ["127.0.0.1:9090:9090"],
        "healthcheck": _wget_check("http://127.0.0.1:9090/-/healthy"),
    }
    services["grafana"] = {
        "image": GRAFANA_IMAGE,
        "restart": "unless-stopped",
        "depends_on": {"prometheus": {"condition": "service_healthy"}},
        "volumes": ["./grafana/provisioning:/etc/grafana/provisioning:ro",
                    "./grafana/homestack-dashboard.json:/var/lib/grafana/dashboards/homestack/homestack.json:ro",
                    "grafana-data:/var/lib/grafana"],
        "ports": ["127.0.0.1:3000:3000"],
        "healthcheck": _wget_check("http://127.0.0.1:3000/api/health"),
    }
    volumes = {name: {} for name in ("homestack-state", "prometheus-data", "grafana-data")}
    if "qdrant" in services:
        volumes.update({"qdrant-storage": {}, "qdrant-snapshots": {}})
    project = {"name": "homestack", "services": services, "volumes": volumes}
    key_file = "/etc/prometheus/gateway.key" if fleet.auth_enabled else None
    files = {
        "compose.yaml": ctx.header("compose") + yaml.safe_dump(project, sort_keys=False),
        "fleet.yaml": ctx.fleet_yaml("compose", **changes),
        "homestack.env": ctx.header("compose") + "# Secrets for the homestack services: VAR=value a line.\n",
        "prometheus/prometheus.yml": render_prometheus(f"gateway:{GATEWAY_PORT}", rules=["/etc/prometheus/alerts.yml"],
                                                       key_file=key_file),
        "prometheus/alerts.yml": shipped_alerts(),
        "grafana/homestack-dashboard.json": (ASSETS / "grafana" / "homestack-dashboard.json").read_text(),
        "grafana/provisioning/dashboards/homestack.yaml":
            (ASSETS / "grafana" / "provisioning" / "dashboards" / "homestack.yaml").read_text(),
        "grafana/provisioning/datasources/homestack.yaml": _datasource("http://prometheus:9090"),
    }
    if key_file:
        files["prometheus/gateway.key"] = ""  # put an admin or API key here (the gateway's /metrics needs one)
    return files


def _datasource(url: str) -> str:
    """The shipped Grafana datasource, pointed at Prometheus inside the compose network."""
    data = yaml.safe_load((ASSETS / "grafana" / "provisioning" / "datasources" / "homestack.yaml").read_text())
    for source in data["datasources"]:
        source["url"] = url
    return yaml.safe_dump(data, sort_keys=False)


def _snapshots(ctx: DeployContext) -> dict[str, Any]:
    """A loop beside Qdrant taking a snapshot every ``qdrant_snapshot_hours`` (keeping the newest few)."""
    script = snapshot_script(ctx.deploy, "qdrant", QDRANT_PORT)
    loop = f"while sleep {ctx.deploy.qdrant_snapshot_hours * 3600}; do bash -c {shlex.quote(script)} || " \
           "echo 'qdrant snapshot failed' >&2; done"
    return {
        "image": ctx.deploy.qdrant_image,
        "restart": "unless-stopped",
        "depends_on": {"qdrant": {"condition": "service_healthy"}},
        "entrypoint": ["bash", "-c", loop.replace("$", "$$")],  # $$: compose would interpolate a lone $
    }
