"""The README's commands and examples are checked against the real thing."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import ensure_debian

from homestack.cli import _parser

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.DOTALL)


def test_quickstart_is_exactly_two_make_commands_that_exist():
    quickstart = README.split("## Quickstart", 1)[1]
    first = re.search(r"```sh\n(.*?)```", quickstart, re.DOTALL).group(1)
    commands = [line.split("#")[0].strip() for line in first.strip().splitlines()]
    assert commands == ["make serve", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("serve", "test", "bench"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("host, build", [
    ({}, "CPU build: no NVIDIA GPU found"),
    ({"nvidia-smi": "echo 'GPU 0: Fake (UUID: GPU-0)'"}, "CPU build: an NVIDIA GPU is present but not the CUDA toolkit"),
    ({"nvidia-smi": "echo 'GPU 0: Fake (UUID: GPU-0)'", "nvcc": "true"}, "CUDA build (-DGGML_CUDA=ON)"),
])
def test_make_builds_llama_server_for_the_gpu_when_it_can_and_says_which(tmp_path, host, build):
    # Fake nvidia-smi and nvcc on a PATH that hides the machine's own (make -n: nothing runs).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sh", "grep", "ls", "echo", "true"):
        (bin_dir / name).symlink_to(shutil.which(name))
    for name, script in host.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "CUDA_HOME": str(tmp_path / "no-cuda")}
    make = shutil.which("make")
    dry = subprocess.run([make, "-n", "-B", "install"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert f"llama-server: {build}" in dry.stdout, dry.stdout + dry.stderr
    cmake_args = subprocess.run([make, "-p", "-n", "install"], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=60).stdout
    line = next(line for line in cmake_args.splitlines() if line.startswith("CMAKE_ARGS"))
    assert "-DGGML_NATIVE=OFF" in line and ("-DGGML_CUDA=ON" in line) == ("CUDA build" in build)


def _argparse(argv: list[str]) -> tuple[int, str]:
    """Run the real `homestack` argument parser on ``argv`` (nothing is executed): exit code and output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            _parser().parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_every_cli_command_in_the_readme_parses():
    lines = [line.split(" #")[0].strip() for block in _blocks("sh") for line in block.splitlines()
             if line.startswith("homestack ")]
    assert len(lines) >= 30
    for line in lines:
        words = shlex.split(line)[1:]
        if "[" not in line and "|" not in line:  # a command as one would type it: the parser takes it whole
            code, out = _argparse(words)
            assert code == 0, f"{line}: {out}"
            continue
        # A synopsis ("[--flag VALUE]", "a|b"): each flag must be an option of that very (sub)command.
        plain = [w for w in re.sub(r"[\[\]]", " ", line).split()[1:]]
        command = [plain[0]]
        if len(plain) > 1 and re.fullmatch(r"[a-z][a-z-]*(\|[a-z-]+)*", plain[1]):
            command.append(plain[1].split("|")[0])
            if _argparse([*command, "--help"])[0] != 0:  # a positional value, not a subcommand
                command.pop()
        code, usage = _argparse([*command, "--help"])
        assert code == 0, f"{line}: {usage}"
        for flag in re.findall(r"(?<![\w-])(--[a-z-]+|-[a-zA-Z])\b", line):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}\b", usage), f"{line}: {flag} is not an option of {command}"


def test_fleet_file_examples_validate(tmp_path):
    examples = _blocks("yaml")
    assert len(examples) == 7  # two fleet files, speculative decoding, the routes example, the promotion example, the keys example, peers
    for example in examples:
        path = tmp_path / "fleet.yaml"
        path.write_text(example)
        result = subprocess.run([sys.executable, "-m", "homestack", "check", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_curl_examples_work(default_gateway):
    # The real curl, as written: two lines send no Content-Type, so curl sends a form's.
    curl = ensure_debian("curl", "curl")
    commands = [c for c in re.findall(r"^curl .*?(?<!\\)$", README, re.MULTILINE | re.DOTALL)]
    assert len(commands) == 3
    answers = {}
    for command in commands:
        args = shlex.split(command.replace("\\\n", " ").replace("127.0.0.1:8080", default_gateway.url.removeprefix("http://")))
        done = subprocess.run([curl, "-sS", "--max-time", "120", "-w", "\n%{http_code}", *args[1:]],
                              capture_output=True, text=True, timeout=130)
        body, _, status = done.stdout.rpartition("\n")
        assert status == "200", f"{command}: {status} {body} {done.stderr}"
        answers[args[1].split("/v1/", 1)[1]] = json.loads(body)
    assert answers["chat/completions"]["choices"][0]["message"]["content"]
    assert answers["completions"]["choices"][0]["text"]
    assert len(answers["embeddings"]["data"][0]["embedding"]) == 384


def test_python_example_works(default_gateway):
    (example,) = _blocks("python")
    code = example.replace("http://127.0.0.1:8080", default_gateway.url)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


def _get_route_checks(default_gateway) -> dict[str, object]:
    return {
        "/v1/models": lambda r: {m["id"] for m in r.json()["data"]} == {
            "smollm2-135m-instruct", "gemma-3-270m", "minilm-l6-v2"},
        "/health": lambda r: r.content.strip() != b"",
        "/openapi.json": lambda r: r.json()["openapi"].startswith("3.1") and "/v1/chat/completions" in r.json()["paths"],
        "/metrics": lambda r: "# TYPE homestack_model_state gauge" in r.text,
        "/ui": lambda r: r.headers["content-type"].startswith("text/html") and "<html" in r.text.lower(),
        "/admin/running": lambda r: isinstance(r.json()["running"], list) and "counters" in r.json(),
        "/admin/plan": lambda r: r.json()["devices"][0]["id"] == "cpu" and {m["name"] for m in r.json()["models"]} == {
            "smollm2-135m-instruct", "gemma-3-270m", "minilm-l6-v2"},
        "/admin/requests": lambda r: isinstance(r.json()["requests"], list),
        "/admin/history": lambda r: isinstance(r.json()["events"], list) and r.json()["active"] == {},
    }


def test_documented_get_routes_answer_with_what_they_say(default_gateway):
    checks = _get_route_checks(default_gateway)
    for route, check in checks.items():
        assert f"`GET {route}`" in README
        resp = httpx.get(default_gateway.url + route, timeout=30)
        assert resp.status_code == 200 and check(resp), f"{route}: {resp.text[:300]}"


def test_admin_requests_limit_is_the_newest_n_newest_last(default_gateway):
    ids = [f"order-{n}" for n in range(3)]
    for request_id in ids:
        httpx.post(default_gateway.url + "/v1/chat/completions", json={"model": "gpt-9", "messages": []},
                   headers={"X-Request-ID": request_id}, timeout=30)
    default_gateway.log_entry(ids[-1])  # the log has taken the last one
    latest = httpx.get(default_gateway.url + "/admin/requests", params={"limit": 2}, timeout=30).json()["requests"]
    assert [entry["request_id"] for entry in latest] == ids[1:]
