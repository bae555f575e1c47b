"""Stored Responses answers: ``store`` keeps one, ``previous_response_id`` continues it.

As OpenAI does, an answer is stored unless the request says ``store: false``.
What is kept is the conversation that produced it (the input items, the
earlier turns included) and the response; a request naming it as
``previous_response_id`` gets that conversation and the response's output put
before its own input, then is served like any Responses request. Only the key
that created a response may continue it or read it (without keys, anyone).

Answers live as one JSON file each under ``data_dir/responses`` for
``responses.store_ttl`` seconds; past ``responses.store_max_bytes`` the oldest
go first. An unknown, expired, other key's or unstored id is a 400
``previous_response_not_found`` (404 on GET), as OpenAI answers.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import orjson

from ..errors import BadRequest, NotFound
from ..keys import Role
from .asgi import Receive, Send, read_body, send_response
from .context import Request, Services
from .inference import serve_model
from .surfaces.responses import RESPONSES

_ID = re.compile(r"resp_[0-9a-f]{24}\Z")  # the ids the Responses translation makes; nothing else names a file


class ResponseStore:
    """The files under ``directory``, indexed in memory: id -> (expiry, size)."""

    def __init__(self, directory: Path, ttl: float, max_bytes: int):
        self.directory, self.ttl, self.max_bytes = directory, ttl, max_bytes
        self._index: dict[str, tuple[float, int]] = {}
        try:
            for path in directory.glob("resp_*.json"):
                st = path.stat()
                self._index[path.stem] = (st.st_mtime + ttl, st.st_size)
        except OSError:
            pass  # nothing stored yet

    def save(self, key: str, conversation: list[dict[str, Any]], response: dict[str, Any]) -> None:
        response_id = response.get("id")
        if not isinstance(response_id, str) or not _ID.match(response_id):
            return
        data = orjson.dumps({"key": key, "input": conversation, "response": response})
        self._make_room(len(data))
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f".{response_id}.tmp"
        partial.write_bytes(data)
        os.replace(partial, self.directory / f"{response_id}.json")
        self._index[response_id] = (time.time() + self.ttl, len(data))

    def load(self, response_id: str, key: str) -> dict[str, Any] | None:
        """The stored record if ``key`` created it and it has not expired; else None."""
        entry = self._index.get(response_id) if _ID.match(response_id) else None
        if entry is None:
            return None
        if entry[0] < time.time():
            self._drop(response_id)
            return None
        try:
            record = orjson.loads((self.directory / f"{response_id}.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return record if record.get("key") == key else None

    def _make_room(self, size: int) -> None:
        now = time.time()
        for response_id in [i for i, (expiry, _) in self._index.items() if expiry < now]:
            self._drop(response_id)
        used = sum(s for _, s in self._index.values())
        for response_id in sorted(self._index, key=lambda i: self._index[i][0]):  # oldest first
            if used + size <= self.max_bytes:
                break
            used -= self._index[response_id][1]
            self._drop(response_id)

    def _drop(self, response_id: str) -> None:
        self._index.pop(response_id, None)
        (self.directory / f"{response_id}.json").unlink(missing_ok=True)


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
