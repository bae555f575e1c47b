"""Shipped models, sha256 manifests, and how each runner kind is launched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from homestack.artifacts.manifest import is_verified, verified_copy
from homestack.config import load_fleet
from homestack.errors import ConfigError
from homestack.runners.launch import plan_launch


def test_prepare_assembles_gemma_once_and_records_its_sha256(tmp_path):
    home = tmp_path / "home"

    def run() -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOMESTACK_HOME": str(home)}
        return subprocess.run([sys.executable, "-m", "homestack", "prepare"], capture_output=True, text=True, env=env)

    first = run()
    assert first.returncode == 0, first.stderr
    assert "smollm2-135m-instruct: llama.cpp" in first.stdout and "minilm-l6-v2: embeddings" in first.stdout
    gguf = home / "models" / "gemma-3-270m-q4_k_m.gguf"
    manifest = gguf.with_name(gguf.name + ".sha256")
    assert manifest.read_text().startswith("a5fd3b62230aa5ec")
    stamp = (gguf.stat().st_mtime_ns, manifest.stat().st_mtime_ns)
    assert run().returncode == 0
    assert (gguf.stat().st_mtime_ns, manifest.stat().st_mtime_ns) == stamp  # not rebuilt, not re-hashed


def test_a_copy_that_does_not_match_its_sha256_is_refused(tmp_path):
    part = tmp_path / "part"
    part.write_bytes(b"hello")
    with pytest.raises(ConfigError, match="sha256"):
        verified_copy([part], tmp_path / "model.gguf", "0" * 64)
    good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    target = verified_copy([part], tmp_path / "other.gguf", good)
    assert is_verified(target, good)
    target.write_bytes(b"HELLO")  # changed on disk: the manifest no longer vouches for it
    assert not is_verified(target, good)


def test_llama_cpp_argv_carries_every_setting(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    (tmp_path / "f.yaml").write_text(f"""
models:
  m:
    runner: llama.cpp
    model: {gguf}
    ctx_size: 2048
    parallel: 3
    cache_type_k: q8_0
    cache_type_v: q4_0
    args: [--threads, "2"]
    env: {{LLAMA_ARG_X: "1"}}
""")
    fleet = load_fleet(tmp_path / "f.yaml")
    plan = plan_launch("m", fleet.models["m"], fleet)
    argv = plan.argv("m", fleet.models["m"], 4242, gguf)
    assert argv[1:] == [
        "--model", str(gguf), "--alias", "m", "--host", "127.0.0.1", "--port", "4242", "--parallel", "3",
        "--metrics", "--ctx-size", "2048", "--cache-type-k", "q8_0", "--cache-type-v", "q4_0",
        # What the memory plan assumes, and sleeping threads, unless the model's args or env say otherwise:
        "--fit", "off", "--cache-ram", "0", "--ctx-checkpoints", "2", "--poll", "0",
        "--threads", "2",
    ]
    assert plan.env == {"LLAMA_ARG_X": "1"} and plan.version


def test_command_argv_fills_placeholders_without_a_shell(tmp_path):
    (tmp_path / "f.yaml").write_text(
        "models:\n  c:\n    runner: command\n    command: [server, '--port={port}', -m, '{model_path}', '$(rm -rf /)']\n"
    )
    fleet = load_fleet(tmp_path / "f.yaml")
    plan = plan_launch("c", fleet.models["c"], fleet)
    argv = plan.argv("c", fleet.models["c"], 99, Path("/models/x.gguf"))
    assert argv == ["server", "--port=99", "-m", "/models/x.gguf", "$(rm -rf /)"]
