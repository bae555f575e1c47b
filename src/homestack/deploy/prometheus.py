"""A Prometheus configuration that scrapes the gateway (one target covers every runner)."""

from __future__ import annotations

from pathlib import Path

import yaml


def render_prometheus(
    target: str, interval: str = "15s", rules: list[Path] | None = None, key_file: Path | None = None
) -> str:
    """YAML for prometheus.yml; ``target`` is host:port of the gateway."""
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
