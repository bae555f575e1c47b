"""The command kind: any OpenAI-compatible server, started from an argv (no shell)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from .base import FleetSettings, LaunchPlan, ProcessConfig, RunnerKind, checked_model


class CommandModel(ProcessConfig):
    runner: Literal["command"]
    command: list[str] = Field(
        min_length=1,
        description="argv of an OpenAI-compatible server; {port} and {model_path} are filled in. No shell.",
    )
    model: str | None = Field(None, description="Model file for {model_path}: a path or package:NAME.")


def _fill(arg: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        arg = arg.replace(placeholder, value)
    return arg


class Command(RunnerKind):
    """Nothing is known of its memory: only the model's memory: key plans it."""

    name = "command"
    config = CommandModel

    def plan(self, name: str, spec: CommandModel, fleet: FleetSettings) -> LaunchPlan:
        model_ref = checked_model(name, spec.model)
        return LaunchPlan(self, Path(spec.command[0]).name, model_ref, env=spec.env)

    def argv(self, plan: LaunchPlan, name: str, spec: CommandModel, port: int, model_path: Path | None) -> list[str]:
        fill = {"{port}": str(port), "{model_path}": str(model_path or "")}
        return [_fill(arg, fill) for arg in spec.command]
