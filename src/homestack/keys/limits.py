"""Per-key limits: requests per minute, tokens per minute, requests in flight.

Sliding one-minute windows, exact: the gateway is one event loop, and
``admit`` decides and counts in the same synchronous call, so no two requests
can both take the last slot. Tokens are known only after an answer, so a
request is refused when the last minute's tokens already reached the limit.
``now`` is given by the caller (monotonic seconds): the decisions are pure.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .ring import Key

WINDOW = 60.0  # seconds: the "minute" of rpm and tpm

Headers = list[tuple[bytes, bytes]]


@dataclass
class _Usage:
    requests: deque[float] = field(default_factory=deque)  # when each request of the window was admitted
    tokens: deque[tuple[float, int]] = field(default_factory=deque)  # (when, tokens) of finished requests
    token_sum: int = 0
    inflight: int = 0

    def expire(self, now: float) -> None:
        start = now - WINDOW
        while self.requests and self.requests[0] <= start:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= start:
            self.token_sum -= self.tokens.popleft()[1]


@dataclass(frozen=True)
class Verdict:
    reason: str | None  # None: admitted; else the limit that refused it ("rpm", "tpm", "concurrency")
    retry_after: int  # whole seconds, for Retry-After (refused only)
    headers: Headers  # x-ratelimit-* headers for the answer, either way


class Limiter:
    def __init__(self) -> None:
        self._usage: dict[str, _Usage] = {}  # by key name: a rotated key keeps its counts

    @staticmethod
    def limited(key: Key) -> bool:
        return key.rpm is not None or key.tpm is not None or key.concurrency is not None

    def admit(self, key: Key, now: float) -> Verdict:
        """Decide, and if admitted count the request; the caller must ``finish`` every admitted one."""
        usage = self._usage.get(key.name)
        if usage is None:
            usage = self._usage[key.name] = _Usage()
        usage.expire(now)
        reason, wait = None, 0.0
        if key.concurrency is not None and usage.inflight >= key.concurrency:
            reason, wait = "concurrency", 1.0
        elif key.rpm is not None and len(usage.requests) >= key.rpm:
            reason, wait = "rpm", usage.requests[len(usage.requests) - key.rpm] + WINDOW - now
        elif key.tpm is not None and usage.token_sum >= key.tpm:
            reason, wait = "tpm", _tokens_free_at(usage, key.tpm) - now
        if reason is None:
            usage.requests.append(now)
            usage.inflight += 1
        return Verdict(reason, max(1, math.ceil(wait)), _headers(key, usage, now))

    def finish(self, key: Key, tokens: int, now: float) -> None:
        usage = self._usage[key.name]
        usage.inflight -= 1
        if tokens > 0:
            usage.tokens.append((now, tokens))
            usage.token_sum += tokens


def _tokens_free_at(usage: _Usage, tpm: int) -> float:
    """When enough of the window's tokens expire to fall below ``tpm``."""
    remaining = usage.token_sum
    for when, tokens in usage.tokens:
        remaining -= tokens
        if remaining < tpm:
            return when + WINDOW
    return usage.tokens[-1][0] + WINDOW


def _headers(key: Key, usage: _Usage, now: float) -> Headers:
    headers: Headers = []
    if key.rpm is not None:
        reset = usage.requests[0] + WINDOW - now if usage.requests else 0.0
        headers += [(b"x-ratelimit-limit-requests", str(key.rpm).encode()),
                    (b"x-ratelimit-remaining-requests", str(max(0, key.rpm - len(usage.requests))).encode()),
                    (b"x-ratelimit-reset-requests", _duration(reset))]
    if key.tpm is not None:
        reset = usage.tokens[0][0] + WINDOW - now if usage.tokens else 0.0
        headers += [(b"x-ratelimit-limit-tokens", str(key.tpm).encode()),
                    (b"x-ratelimit-remaining-tokens", str(max(0, key.tpm - usage.token_sum)).encode()),
                    (b"x-ratelimit-reset-tokens", _duration(reset))]
    return headers


def _duration(seconds: float) -> bytes:
    """Like OpenAI's reset headers: ``6s``, ``0.5s``."""
    return (f"{max(0.0, seconds):.3f}".rstrip("0").rstrip(".") + "s").encode()
