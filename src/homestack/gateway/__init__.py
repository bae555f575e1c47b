"""The gateway: one OpenAI-compatible ASGI app in front of the fleet."""

from .app import Gateway

__all__ = ["Gateway"]
