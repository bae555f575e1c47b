"""The scheduler: one task that owns fleet state (load, unload, evict, queue, TTL, pins)."""

from .entry import Ticket
from .fleet import Scheduler

__all__ = ["Scheduler", "Ticket"]
