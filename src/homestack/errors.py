"""One error tree for homestack, translated at the edges.

Over HTTP each API surface renders an error in its protocol's shape, with the
``source`` that produced it (gateway, runner, knowledge); on the CLI it becomes
one line on stderr and exit code 1.
"""

from __future__ import annotations


class HomestackError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None
    source = "gateway"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def headers(self) -> list[tuple[bytes, bytes]]:
        """HTTP headers the error's answer carries besides its body."""
        return []


class ConfigError(HomestackError):
    """A fleet file or setting is invalid; the message names file, dotted key and fix."""

    type = "invalid_config"


class KeyedError(ValueError):
    """A validation error about a key below the field being validated (the loader joins ``key`` to it).

    A ValueError, so pydantic reports it as the field's error; the loader turns it into a ConfigError.
    """

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class BadRequest(HomestackError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(HomestackError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(HomestackError):
    status = 403
    type = "permission_error"
    code = "admin_key_required"


class NotFound(HomestackError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(HomestackError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RunnerError(HomestackError):
    """The runner failed: it could not start, died, or sent no valid answer."""

    status = 502
    type = "runner_error"
    code = "runner_failed"
    source = "runner"


class RunnerTimeout(RunnerError):
    status = 504
    type = "timeout_error"
    code = "runner_timeout"


class MethodNotAllowed(HomestackError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: str | None = None):
        super().__init__(message)
        self.allowed = allowed  # the methods the path takes, for the Allow header

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"allow", self.allowed.encode())] if self.allowed else []


class Conflict(HomestackError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class TooManyRequests(HomestackError):
    """A model's queue is full; ``retry_after`` (seconds) goes out as the Retry-After header."""

    status = 429
    type = "rate_limit_error"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after).encode())]


class ClientClosed(HomestackError):
    """The client went away before an answer (nginx's 499); nothing is sent back."""

    status = 499
    type = "invalid_request_error"
    code = "client_closed"


class ServiceUnavailable(HomestackError):
    """A service beside the gateway (the knowledge service) is not answering."""

    status = 503
    type = "service_unavailable"
    code = "service_unavailable"
    source = "knowledge"
