"""Monitoring files for the tools beside homestack: Prometheus scrape config, alert rules, Grafana."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from ..observe.assets import ASSETS


def render_prometheus(
    target: str, interval: str = "15s", rules: list[Path] | None = None, key_file: Path | None = None
) -> str:
    """YAML for prometheus.yml; ``target`` is host:port of the gateway (one target covers every runner)."""
    job: dict[str, object] = {
        "job_name": "homestack",
        "metrics_path": "/metrics",
        "scrape_interval": interval,
        "static_configs": [{"targets": [target]}],
    }
    if key_file is not None:  # the gateway's /metrics needs a key when api_keys are set
        job["authorization"] = {"type": "Bearer", "credentials_file": str(key_file)}
    config: dict[str, object] = {"global": {"scrape_interval": interval, "evaluation_interval": interval}}
    if rules:
        config["rule_files"] = [str(path) for path in rules]
    config["scrape_configs"] = [job]
    header = "# Prometheus configuration for homestack, written by `homestack render prometheus`.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def shipped_alerts() -> str:
    return (ASSETS / "prometheus" / "alerts.yml").read_text()


def grafana_files(dest: Path) -> list[Path]:
    """Copy the dashboard and its provisioning files under ``dest``; the paths written."""
    source = ASSETS / "grafana"
    written = []
    for path in sorted(source.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            written.append(target)
    return written
