"""Serving a request on a peer: the best peer first, the next one if it cannot be reached.

The request goes out with the peer's key, the caller's request id and a hop header naming this
host; a gateway never forwards a request that carries the hop header, so requests cannot loop.
Only a peer that fails before answering is passed over: once one answers, its answer is the
client's, so nothing is sent twice and nothing waits on a dead host for longer than a connect.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RunnerError, ServiceUnavailable
from ..gateway.asgi import Headers, Receive, Send
from ..gateway.proxy import deliver, open_upstream
from ..gateway.surfaces import Operation
from ..gateway.upstream import UpstreamPool
from ..observe import RequestRecord
from .choice import PeerModel, PeerView
from .directory import PeerDirectory

HOP_HEADER = b"x-homestack-hop"


@dataclass(frozen=True)
class PeerTarget:
    """A model on a peer, shaped like a runner for the proxy."""

    name: str
    base_url: str
    upstream_headers: bytes
    secrets: tuple[str, ...]


def forwarded(headers: Headers) -> bool:
    """Whether another gateway forwarded this request here (then it is served here or not at all)."""
    return any(name == HOP_HEADER for name, _ in headers)


async def forward_to_peers(
    directory: PeerDirectory, choices: list[tuple[PeerView, PeerModel]], pool: UpstreamPool, operation: Operation,
    body: bytes, rec: RequestRecord, send: Send, receive: Receive, extra_headers: Headers, origin: str,
) -> None:
    failures = []
    for peer, model in choices:
        target = PeerTarget(
            name=f"{model.name} on {peer.name}",
            base_url=directory.url(peer.name) + "/v1",
            upstream_headers=b"".join((
                directory.auth_header(peer.name), HOP_HEADER, b": ", origin.encode(), b"\r\nX-Request-ID: ",
                rec.request_id.encode("latin-1"), b"\r\n",
            )),
            secrets=directory.secrets[peer.name],
        )
        try:
            resp = await open_upstream(pool, target, operation, body)
        except RunnerError as exc:  # unreachable or silent: the next peer takes the request
            directory.mark_down(peer.name, exc.message)
            failures.append(exc.message)
            continue
        rec.host, rec.runner, rec.runner_kind = peer.host, model.name, model.runner
        await deliver(resp, target, operation, rec, send, receive, extra_headers)
        return
    raise ServiceUnavailable(f"no peer serving {rec.model!r} answered: {'; '.join(failures)}")
