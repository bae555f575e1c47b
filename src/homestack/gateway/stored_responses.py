"""Stored Responses answers: ``store`` keeps one, ``previous_response_id`` continues it.

As OpenAI does, an answer is stored unless the request says ``store: false``.
What is kept is the conversation that produced it (the input items, the
earlier turns included) and the response; a request naming it as
``previous_response_id`` gets that conversation and the response's output put
before its own input, then is served like any Responses request. Only the key
that created a response may continue it or read it (without keys, anyone).

Answers are kept on disk by :mod:`.response_store`. An unknown, expired,
other key's or unstored id is a 400 ``previous_response_not_found`` (404 on
GET), as OpenAI answers.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import BadRequest, NotFound
from ..keys import Role
from .asgi import Receive, Send, read_body, send_response
from .context import Request, Services
from .inference import serve_model
from .response_store import ResponseStore
from .surfaces.responses import RESPONSES


def store_for(services: Services) -> ResponseStore:
    """The gateway's store, made on first use; it follows the fleet's settings (a reload may change them)."""
    settings, directory = services.fleet.responses, services.fleet.data_dir / "responses"
    if services.responses is None or services.responses.directory != directory:
        services.responses = ResponseStore(directory, settings.store_ttl, settings.store_max_bytes)
    services.responses.ttl, services.responses.max_bytes = settings.store_ttl, settings.store_max_bytes
    return services.responses


def _items(value: Any) -> list[dict[str, Any]]:
    return [{"type": "message", "role": "user", "content": value}] if isinstance(value, str) else list(value)


def _not_found(response_id: str, ttl: float) -> BadRequest:
    return BadRequest(f"Previous response with id {response_id!r} not found. previous_response_id must name a "
                      f"response stored (store not false) by the same key in the last {ttl:g} seconds.",
                      param="previous_response_id", code="previous_response_not_found")


async def create(services: Services, req: Request) -> None:
    """POST /v1/responses: the earlier turns put before the input, then served; the answer kept if asked."""
    key = req.key.name if req.key is not None else ""
    services.auth.require(req.key, Role.INFERENCE)  # before the store is asked about any id
    body = await read_body(req.receive, services.fleet.max_body_bytes, req.content_length)
    payload = RESPONSES.surface.parse(body, RESPONSES)
    req.record.model = payload["model"]  # logged even if the previous response is not found
    store = store_for(services)
    previous = payload.pop("previous_response_id", None)
    conversation = _items(payload["input"])
    if previous is not None:
        record = store.load(previous, key) if isinstance(previous, str) else None
        if record is None:
            raise _not_found(str(previous)[:100], store.ttl)
        conversation = [*record["input"], *record["response"].get("output", ()), *conversation]
        payload["input"] = conversation
        body = orjson.dumps(payload)
    req.receive = _replay(body, req.receive)
    req.content_length = str(len(body)).encode()
    if payload.get("store") is False:
        await serve_model(services, req)
        return
    answer = _Answer(req.send)
    req.send = answer.send
    await serve_model(services, req)
    response = answer.response()
    if response is not None and response.get("status") == "completed":
        store.save(key, conversation, response)


async def get(services: Services, req: Request) -> None:
    """GET /v1/responses/{id}: a stored response, to the key that created it."""
    key = req.key.name if req.key is not None else ""
    record = store_for(services).load(req.params["id"], key)
    if record is None:
        raise NotFound(f"Response with id {req.params['id']!r} not found.", code="response_not_found")
    await send_response(req.send, 200, orjson.dumps(record["response"]), headers=req.headers)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` once, then what the client sends (its disconnect)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Answer:
    """What went to the client, kept to find the finished response (the whole answer, or the last event)."""

    def __init__(self, send: Send):
        self._send = send
        self.status = 0
        self.parts: list[bytes] = []

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif self.status == 200:
            self.parts.append(message.get("body", b""))
        await self._send(message)

    def response(self) -> dict[str, Any] | None:
        data = b"".join(self.parts)
        if self.status != 200 or not data:
            return None
        marker = data.rfind(b"event: response.completed\n")
        try:
            if marker < 0:  # not a stream: the answer is the response
                return orjson.loads(data) if data.lstrip().startswith(b"{") else None
            line = data[marker:].split(b"\n", 2)[1]
            return orjson.loads(line.removeprefix(b"data:").strip())["response"]
        except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
            return None
