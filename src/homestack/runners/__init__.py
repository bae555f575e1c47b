"""Runners: one child process (or remote URL) per model, with an explicit state machine."""

from .runner import Runner, State

__all__ = ["Runner", "State"]
