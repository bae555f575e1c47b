"""The remote kind: an OpenAI-compatible API that is already running elsewhere; nothing is started."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import FleetSettings, KindConfig, LaunchPlan, RunnerKind


class RemoteModel(KindConfig):
    runner: Literal["remote"]
    url: str = Field(pattern=r"^https?://", description="Base URL of an OpenAI-compatible API, e.g. http://host:9000/v1")
    api_key: str | None = Field(None, description="Sent upstream as Authorization: Bearer.")
    health_path: str | None = Field(None, pattern=r"^/", description="Checked on load when set.")

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")


class Remote(RunnerKind):
    name = "remote"
    config = RemoteModel

    def plan(self, name: str, spec: RemoteModel, fleet: FleetSettings) -> LaunchPlan:
        return LaunchPlan(self, "remote")

    def attach_url(self, spec: RemoteModel) -> str:
        return spec.url

    def health_path(self, spec: RemoteModel) -> str | None:
        return spec.health_path

    def api_key(self, spec: RemoteModel) -> str | None:
        return spec.api_key
