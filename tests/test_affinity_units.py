"""Prompt-cache affinity, unit by unit: the conversation key, the slot choice (a table), the slot table,
the pinned body, and dropping Claude Code's per-request billing header."""

from __future__ import annotations

import orjson
import pytest

from types import SimpleNamespace

from homestack.gateway.slots import SlotTable, affine_request, pinned
from homestack.gateway.surfaces.anthropic import ANTHROPIC, COUNT_TOKENS, MESSAGES
from homestack.gateway.surfaces.openai import CHAT, EMBEDDINGS
from homestack.runners.kinds.command import Command
from homestack.runners.kinds.llama_cpp import LlamaCpp, LlamaCppModel
from homestack.routing.affinity import SlotView, choose_slot, conversation_key

SYSTEM = "You are a coding agent."
TOOLS = [{"name": "Read", "input_schema": {"type": "object"}}]


def _turns(first: str, *more: str) -> list[dict]:
    """A growing Anthropic conversation: each turn appends an answer and a question."""
    messages = [{"role": "user", "content": first}]
    for text in more:
        messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": text}]
    return messages


def _key(messages, headers=(), **fields) -> str:
    return conversation_key({"model": "m", "system": SYSTEM, "tools": TOOLS, "messages": messages, **fields},
                            headers)


def test_the_same_conversation_keeps_its_key_as_it_grows():
    assert _key(_turns("fix the bug")) == _key(_turns("fix the bug", "and test it")) \
        == _key(_turns("fix the bug", "and test it", "commit"))


def test_different_conversations_get_different_keys():
    assert _key(_turns("fix the bug")) != _key(_turns("write docs"))


@pytest.mark.parametrize("name, headers, fields", [
    ("Claude Code's session header", [(b"x-claude-code-session-id", b"s-1")], {}),
    ("Codex's session header", [(b"session-id", b"s-1")], {}),
    ("Codex's prompt_cache_key", [], {"prompt_cache_key": "s-1"}),
    ("Anthropic metadata.user_id", [], {"metadata": {"user_id": "s-1"}}),
    ("OpenAI user", [], {"user": "s-1"}),
])
def test_a_client_key_tells_apart_conversations_that_start_alike(name, headers, fields):
    other = [(h, b"s-2") for h, _ in headers]
    other_fields = {k: ({"user_id": "s-2"} if k == "metadata" else "s-2") for k in fields}
    same = _key(_turns("hi"), headers, **fields)
    assert same == _key(_turns("hi", "more"), headers, **fields), name
    assert same != _key(_turns("hi"), other, **other_fields), name


def test_a_side_request_of_the_same_session_is_another_conversation():
    session = [(b"x-claude-code-session-id", b"s-1")]
    title = conversation_key({"model": "m", "system": "Write a title.", "messages": _turns("fix the bug")}, session)
    assert title != _key(_turns("fix the bug"), session)


@pytest.mark.parametrize("payload", [
    {"model": "m", "instructions": "be brief", "input": [{"role": "user", "content": "a"}]},  # Responses
    {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]},  # chat
    {"model": "m", "prompt": "Once upon a time " * 40},  # completions
])
def test_every_surface_has_a_stable_head(payload):
    grown = dict(payload)
    for field in ("input", "messages"):
        if field in payload:
            grown[field] = payload[field] + [{"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    if "prompt" in payload:
        grown["prompt"] = payload["prompt"] + " there was"
    assert conversation_key(payload, ()) == conversation_key(grown, ())


IDLE = SlotView()
NOW = 1000.0
A_MAIN = SlotView(0, "A", 40_000, NOW - 5)
A_SIDE = SlotView(0, "A", 2_000, NOW - 1)
B = SlotView(0, "B", 30_000, NOW - 3)
B_BUSY = SlotView(1, "B", 30_000, NOW - 3)
A_BUSY = SlotView(1, "A", 40_000, NOW - 1)
SMALL = SlotView(0, "C", 1_000, NOW - 2)
OLD_BIG = SlotView(0, "D", 90_000, NOW - 5_000)


@pytest.mark.parametrize("why, key, slots, expected", [
    ("its own idle slot", "A", [B, A_MAIN], 1),
    ("its own slot over an empty one", "A", [IDLE, A_MAIN], 1),
    ("the main thread's slot, not its side request's", "A", [A_SIDE, A_MAIN], 1),
    ("a new conversation takes an empty slot", "N", [A_MAIN, IDLE, B], 1),
    ("... else the least recently used, however big", "N", [A_SIDE, OLD_BIG, SMALL], 1),
    ("... whatever their sizes", "N", [A_MAIN, B, SMALL], 0),
    ("its own slot busy: another idle slot, not a wait", "A", [A_BUSY, B], 1),
    ("never a busy slot while one is idle", "N", [B_BUSY, A_MAIN], 1),
    ("all busy: it waits on its own slot", "A", [B_BUSY, A_BUSY], 1),
    ("all busy, none its own: the least busy", "N", [SlotView(2, "X", 1, NOW), B_BUSY], 1),
    ("all busy, equally: the least recently used", "N", [A_BUSY, B_BUSY], 1),
])
def test_slot_choice(why, key, slots, expected):
    assert choose_slot(key, slots) == expected, why


def test_the_table_keeps_conversations_apart_and_frees_slots():
    table = SlotTable(2, "http://127.0.0.1:1/v1")
    a = table.take("A", 100)
    b = table.take("B", 100)  # A still runs
    assert a != b
    table.give_back(a)
    table.give_back(b)
    assert [table.take("A", 120), table.take("B", 120)] == [a, b]
    assert all(s.busy == 1 for s in table.slots)


@pytest.mark.parametrize("body", [b'{"model":"m","messages":[]}', b'  {\n "model": "m"}', b"{}"])
def test_a_pinned_body_is_the_same_json_with_the_slot(body):
    assert orjson.loads(pinned(body, "id_slot", 3)) == {**orjson.loads(body), "id_slot": 3}


BILLING = "x-anthropic-billing-header: cc_version=2.1.36.0b8; cc_entrypoint=cli; cch=36ee5;"


@pytest.mark.parametrize("system, kept", [
    ([{"type": "text", "text": BILLING}, {"type": "text", "text": SYSTEM}], [{"type": "text", "text": SYSTEM}]),
    (f"{BILLING}\n{SYSTEM}", SYSTEM),
])
def test_claude_codes_billing_header_is_dropped_so_the_prompt_repeats(system, kept):
    payload = {"model": "m", "system": system, "messages": _turns("hi")}
    assert ANTHROPIC.drop_volatile(payload) is True
    assert payload["system"] == kept


def test_a_system_prompt_without_it_is_untouched():
    payload = {"model": "m", "system": [{"type": "text", "text": SYSTEM}], "messages": _turns("hi")}
    assert ANTHROPIC.drop_volatile(payload) is False
    assert payload["system"] == [{"type": "text", "text": SYSTEM}]


def _runner(kind=LlamaCpp(), parallel=2, **spec):
    config = LlamaCppModel(runner="llama.cpp", model="m.gguf", parallel=parallel, **spec)
    return SimpleNamespace(plan=SimpleNamespace(kind=kind), slots=parallel, spec=config)


@pytest.mark.parametrize("why, runner, operation, payload, expected", [
    ("chat on two llama.cpp slots", _runner(), CHAT, {}, True),
    ("Messages too (translated to name the slot)", _runner(), MESSAGES, {}, True),
    ("one slot: nothing to choose", _runner(parallel=1), CHAT, {}, False),
    ("turned off in the fleet file", _runner(slot_affinity=False), CHAT, {}, False),
    ("the client named its slot", _runner(), CHAT, {"id_slot": 1}, False),
    ("embeddings hold no prompt cache", _runner(), EMBEDDINGS, {}, False),
    ("count_tokens only tokenizes", _runner(), COUNT_TOKENS, {}, False),
    ("a kind that cannot name a slot", _runner(kind=Command()), CHAT, {}, False),
])
def test_which_requests_are_pinned(why, runner, operation, payload, expected):
    assert affine_request(runner, operation, payload) is expected, why
