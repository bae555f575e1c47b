"""Shipped monitoring files: the Grafana dashboard and provisioning, Prometheus alert rules."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
