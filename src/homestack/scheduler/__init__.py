"""The scheduler: a pure core (``decide``: fleet state + event -> actions) and the loop that owns
fleet state, feeds it events and applies the actions (load, unload, evict, queue, TTL, pins)."""

from .entry import Ticket
from .fleet import Scheduler

__all__ = ["Scheduler", "Ticket"]
