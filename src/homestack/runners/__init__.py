"""Runners: one child process (or remote URL) per model, with an explicit state machine."""

from .runner import HealthProbe, Runner, State

__all__ = ["HealthProbe", "Runner", "State"]
