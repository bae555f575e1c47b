"""Observability: structured request logs."""

from .requestlog import RequestLog, RequestRecord

__all__ = ["RequestLog", "RequestRecord"]
