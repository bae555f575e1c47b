"""The scheduler: owns fleet-level decisions (load, unload, TTL, pins)."""

from .fleet import Scheduler

__all__ = ["Scheduler"]
