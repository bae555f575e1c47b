"""Prompt-cache affinity: which conversation a request continues, and which runner slot should serve it.

llama-server keeps the last prompt of each slot in that slot's KV cache, so a
conversation sent back to the slot that served its previous turn only pays
for its new tokens. A conversation is named by a key the client sends (Claude
Code's session, Codex's ``prompt_cache_key``, Anthropic ``metadata.user_id``,
OpenAI ``user``) together with the stable head of its prompt (system prompt,
tools and first message): an agent's side requests (titles, subagents) carry
the session but another system prompt, and must not evict the main thread.

Both functions here are pure; the gateway keeps the slot table and pins the slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

# Where clients name their conversation, first match wins: headers, then body fields.
_KEY_HEADERS = (b"x-claude-code-session-id", b"session-id")  # Claude Code; Codex
_HEAD_CHARS = 512  # of a plain-string prompt: its start tells conversations apart (a shorter one is all head)


def conversation_key(payload: Mapping[str, Any], headers: Iterable[tuple[bytes, bytes]]) -> str:
    """A stable name for the conversation ``payload`` continues: the client's key (if it sends one)
    and a hash of the prompt's head. The same conversation gives the same key on every turn."""
    wanted = dict(headers)
    client = next((wanted[h].decode("latin-1") for h in _KEY_HEADERS if wanted.get(h)), None)
    if client is None:
        metadata = payload.get("metadata")
        candidates = (payload.get("prompt_cache_key"), metadata.get("user_id") if isinstance(metadata, Mapping)
                      else None, payload.get("user"))
        client = next((str(c) for c in candidates if isinstance(c, str | int) and c != ""), "")
    digest = hashlib.sha256(client.encode())
    digest.update(b"\0")
    digest.update(orjson.dumps(_head(payload), option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:32]


def _head(payload: Mapping[str, Any]) -> list[Any]:
    """What every turn of a conversation starts with: instructions, tools, and the messages up to
    and including the first that is not an instruction (a later turn only appends)."""
    head: list[Any] = [payload.get("system"), payload.get("instructions"), payload.get("tools")]
    messages = payload.get("messages", payload.get("input"))
    if isinstance(messages, list):
        for message in messages:
            head.append(message)
            if not (isinstance(message, Mapping) and message.get("role") in ("system", "developer")):
                break
    elif isinstance(messages, str):
        head.append(messages[:_HEAD_CHARS])
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        head.append(prompt[:_HEAD_CHARS])
    return head


@dataclass(frozen=True, slots=True)
class SlotView:
    """One slot of a runner as the gateway last left it."""

    busy: int = 0  # requests in flight on it
    owner: str | None = None  # the conversation whose prompt it holds (the last one sent there)
    size: int = 0  # bytes of that prompt (a side request's is small; its main thread's large)
    used: float = 0.0  # when it was last given a request (monotonic seconds)


def choose_slot(key: str, slots: Sequence[SlotView]) -> int:
    """The slot for a request of conversation ``key``.

    1. An idle slot holding the conversation (the largest, if a side request of the same key got
       another: that is the main thread).
    2. Else an idle slot: an empty one, else the least recently used (a new conversation evicts the
       one least likely to come back). A conversation whose own slot is busy (its previous request
       still runs) takes another slot rather than wait behind it.
    3. No slot idle (more requests admitted than slots): its own slot, where llama-server queues it
       and its prefix survives; else the least busy, least recently used slot.
    """
    idle = [i for i, s in enumerate(slots) if not s.busy]
    own = [i for i in idle if slots[i].owner == key]
    if own:
        return max(own, key=lambda i: (slots[i].size, slots[i].used))
    if idle:
        return min(idle, key=lambda i: (slots[i].owner is not None, slots[i].used))
    held = [i for i, s in enumerate(slots) if s.owner == key]
    if held:
        return max(held, key=lambda i: (slots[i].size, slots[i].used))
    return min(range(len(slots)), key=lambda i: (slots[i].busy, slots[i].used))
