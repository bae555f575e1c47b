"""Observability: structured request logs and Prometheus metrics."""

from .requestlog import RequestLog, RequestRecord

__all__ = ["RequestLog", "RequestRecord"]
