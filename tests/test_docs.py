"""The README's commands and examples are checked against the real thing."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

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


def test_every_cli_command_in_the_readme_exists():
    lines = [line for block in _blocks("sh") for line in block.splitlines() if line.startswith("homestack ")]
    assert len(lines) >= 8
    for line in lines:
        sub = line.split()[1]
        result = subprocess.run([sys.executable, "-m", "homestack", sub, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, f"{line}: {result.stderr}"
        for flag in re.findall(r"--[a-z-]+|-[a-z]\b", line.split("#")[0]):
            assert flag in result.stdout, f"{line}: {flag} is not an option of homestack {sub}"


def test_fleet_file_examples_validate(tmp_path):
    examples = _blocks("yaml")
    assert len(examples) == 4  # two fleet files, the keys example, peers
    for example in examples:
        path = tmp_path / "fleet.yaml"
        path.write_text(example)
        result = subprocess.run([sys.executable, "-m", "homestack", "check", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_curl_examples_work(default_gateway):
    commands = [c for c in re.findall(r"^curl .*?(?<!\\)$", README, re.MULTILINE | re.DOTALL)]
    assert len(commands) == 3
    for command in commands:
        args = shlex.split(command.replace("\\\n", " "))
        url = args[1].replace("127.0.0.1:8080", default_gateway.url.removeprefix("http://"))
        body = json.loads(args[args.index("-d") + 1])
        resp = httpx.post("http://" + url.removeprefix("http://"), json=body, timeout=120)
        assert resp.status_code == 200, resp.text


def test_python_example_works(default_gateway):
    (example,) = _blocks("python")
    code = example.replace("http://127.0.0.1:8080", default_gateway.url)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


@pytest.mark.parametrize(
    "route", ["/v1/models", "/health", "/openapi.json", "/metrics", "/ui", "/admin/running", "/admin/plan", "/admin/requests"]
)
def test_documented_get_routes_answer(default_gateway, route):
    assert f"`GET {route}`" in README
    assert httpx.get(default_gateway.url + route).status_code == 200
