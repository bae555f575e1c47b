"""API keys: who a caller is (a named key), what it may do (roles, models), how much (limits)."""

from .ring import ROLES, Key, KeyRing, Role

__all__ = ["ROLES", "Key", "KeyRing", "Role"]
