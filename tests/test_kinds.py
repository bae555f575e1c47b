"""Runner kinds as plug-ins: every kind provides the protocol, a new kind needs only its own
module (shown with a kind defined here), and the layers under it import without cycles."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import pytest
from pydantic import Field

from homestack.config import FleetConfig, load_fleet
from homestack.config.schema import MODEL_KINDS, RUNNER_KINDS, model_union
from homestack.errors import ConfigError
from homestack.planner import Components, MemoryEstimate, build_plan
from homestack.planner.devices import cpu_device
from homestack.runners import Runner, State
from homestack.runners.kinds import KINDS, KindConfig, LaunchPlan, RunnerKind, kind_for
from homestack.runners.kinds.base import ProcessConfig
from homestack.runners.launch import plan_launch
from homestack.runners.process import terminate
from homestack.scheduler.entry import Entry

SRC = Path(__file__).parent.parent / "src" / "homestack"
FAKE_SERVER = Path(__file__).parent / "fake_openai.py"
MIB = 2**20


def test_every_registered_kind_provides_the_protocol():
    assert list(KINDS) == ["llama.cpp", "command", "embeddings", "remote", "vllm"] == list(RUNNER_KINDS)
    for name, kind in KINDS.items():
        assert isinstance(kind, RunnerKind) and kind.name == name
        assert issubclass(kind.config, KindConfig) and MODEL_KINDS[name] is kind.config
        assert kind.config.model_fields["runner"].annotation == Literal[name]  # the union's tag
        assert type(kind).plan is not RunnerKind.plan, f"{name} must say how it is planned"
        assert kind.metrics_path is None or kind.metrics_path.startswith("/")
        attaches = type(kind).attach_url is not RunnerKind.attach_url
        launches = type(kind).argv is not RunnerKind.argv
        assert attaches != launches, f"{name} either starts a process or attaches to a running API"


@pytest.mark.parametrize("yaml, slots, metrics, health", [
    ("{runner: llama.cpp, model: m.gguf, parallel: 3}", 3, "/metrics", "/health"),
    ("{runner: command, command: [server], health_path: /ready}", None, None, "/ready"),
    ("{runner: embeddings, model: m}", None, None, "/health"),
    ("{runner: remote, url: 'http://h:1/v1/', api_key: k}", None, None, None),
    ("{runner: vllm, model: m, max_num_seqs: 2}", 2, "/metrics", "/health"),
])
def test_runner_slots_metrics_and_readiness_come_from_its_kind(tmp_path, yaml, slots, metrics, health):
    (tmp_path / "f.yaml").write_text(f"models:\n  m: {yaml}\n")
    fleet = load_fleet(tmp_path / "f.yaml")
    spec = fleet.models["m"]
    runner = Runner("m", spec, fleet, LaunchPlan(kind_for(spec), "test"))  # no binary needed to describe it
    assert (runner.slots, runner.metrics_path, kind_for(spec).health_path(spec)) == (slots, metrics, health)
    assert runner.kind == spec.runner
    remote = spec.runner == "remote"
    assert runner.base_url == ("http://h:1/v1" if remote else "")
    assert runner.upstream_headers == (b"Authorization: Bearer k\r\n" if remote else b"")


@pytest.mark.parametrize("yaml, busy, ready", [
    ("{runner: llama.cpp, model: m.gguf}", "0.00.555 I cmn init: llama threadpool init, n_threads = 2",
     "0.01.962.081 I srv  llama_server: model loaded"),
    ("{runner: embeddings, model: m}", "Batches: 100%", "embeddings: loaded /m in 1.2 s"),
])
def test_a_load_is_ready_as_soon_as_the_runner_logs_its_ready_line(tmp_path, yaml, busy, ready):
    (tmp_path / "f.yaml").write_text(f"data_dir: {tmp_path}\nmodels:\n  m: {yaml}\n")
    fleet = load_fleet(tmp_path / "f.yaml")
    runner = Runner("m", fleet.models["m"], fleet, LaunchPlan(kind_for(fleet.models["m"]), "test"))

    async def not_listening(origin: str, path: str) -> int:
        raise OSError("connection refused")

    async def main() -> None:
        runner.bind(not_listening)  # no health check ever answers: only the line can make it ready
        running = SimpleNamespace(returncode=None)  # all the wait reads of its process
        wait = asyncio.ensure_future(runner._wait_healthy("http://127.0.0.1:9", running))
        await asyncio.sleep(0.05)
        runner.log.write(busy)
        await asyncio.sleep(0.2)
        assert not wait.done()  # any other line leaves the wait alone
        runner.log.write(ready)
        await asyncio.wait_for(wait, 60)

    asyncio.run(main())


@pytest.mark.parametrize("kind, signal_seen", [("llama.cpp", -9), ("command", 0)])
def test_an_idle_runner_with_nothing_to_save_is_killed_at_once(tmp_path, kind, signal_seen):
    """llama-server holds nothing worth a clean exit: a swap does not wait for one. Other kinds get
    SIGTERM and their grace (the stand-in exits 0 on SIGTERM)."""
    stand_in = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
                "print(1, flush=True); time.sleep(600)")

    async def main() -> int:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", stand_in, stdout=asyncio.subprocess.PIPE,
                                                    start_new_session=True)
        await proc.stdout.readline()  # its SIGTERM handler is in place
        return await terminate(proc, KINDS[kind].stop_grace)

    assert asyncio.run(main()) == signal_seen


# A kind that is not in the registry: tests/fake_openai.py as a runner with its own key.
class EchoModel(ProcessConfig):
    runner: Literal["echo"]
    tag: str = Field(description="Returned by the fake server.")


class Echo(RunnerKind):
    name = "echo"
    config = EchoModel
    metrics_path = "/stats"

    def plan(self, name, spec, fleet):
        return LaunchPlan(self, "echo 1", env=spec.env)

    def argv(self, plan, name, spec, port, model_path):
        return [sys.executable, str(FAKE_SERVER), "--port", str(port), "--tag", spec.tag]

    def estimate(self, spec, plan, data_dir, gpu):
        return MemoryEstimate({"cpu": Components(overhead=10 * MIB)})

    def slots(self, spec):
        return 2


@pytest.fixture
def echo_fleet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FleetConfig:
    """A fleet with one echo model, validated by a schema built from the registry plus Echo."""
    monkeypatch.setitem(KINDS, "echo", Echo())  # undone after the test

    class EchoFleet(FleetConfig):
        models: dict[str, model_union(KINDS)] = Field(default_factory=dict)

    fleet = EchoFleet.model_validate({"data_dir": tmp_path, "models": {"e": {"runner": "echo", "tag": "hi"}}})
    assert isinstance(fleet.models["e"], EchoModel)
    return fleet


def test_a_new_kind_validates_plans_and_launches_without_edits_elsewhere(echo_fleet):
    spec = echo_fleet.models["e"]
    launch = plan_launch("e", spec, echo_fleet)
    capacity = build_plan(echo_fleet, {"e": launch}, [cpu_device()], "test")
    assert capacity.models["e"].basis == "estimated" and capacity.models["e"].total == 10 * MIB
    runner = Runner("e", spec, echo_fleet, launch)
    assert Entry(runner, capacity.models["e"]).limit == 2  # the scheduler takes the kind's slots

    async def probe(origin: str, path: str) -> int:
        def get() -> int:
            with urllib.request.urlopen(origin + path, timeout=2) as resp:
                return resp.status
        return await asyncio.to_thread(get)

    async def run() -> None:
        runner.bind(probe)
        await runner.ensure_ready()
        try:
            assert runner.state is State.READY and runner.pid
            assert await probe(runner.origin, runner.metrics_path) == 200
        finally:
            await runner.stop()
        assert runner.state is State.STOPPED and runner.pid is None

    asyncio.run(run())


def test_an_unknown_runner_is_refused_with_the_registered_kinds(tmp_path):
    (tmp_path / "f.yaml").write_text("models:\n  e: {runner: echo, tag: hi}\n")
    with pytest.raises(ConfigError, match="unknown runner 'echo'; one of: llama.cpp, command, embeddings, remote, vllm"):
        load_fleet(tmp_path / "f.yaml")


# -- layering ----------------------------------------------------------------------------------

def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every homestack module -> the homestack modules it imports anywhere (top level,
    ``if TYPE_CHECKING``, inside functions); ``from pkg import mod`` counts as importing ``pkg.mod``."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


_LAYERS = ("homestack.config", "homestack.runners", "homestack.planner", "homestack.sizes", "homestack.artifacts")


def test_config_runners_and_planner_import_no_cycle():
    graph = _imports()
    assert "homestack.runners.kinds.llama_cpp" in graph["homestack.runners.kinds"]  # the walk sees imports
    ours = [c for c in _cycles(graph) if any(m.startswith(_LAYERS) for m in c)]
    assert ours == []


def test_each_module_imports_first_in_a_fresh_interpreter():
    """Package __init__ files run on any import: no order of first import may meet a half-built module."""
    names = sorted(n for n in _imports() if n.startswith(_LAYERS))
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'homestack' or m.startswith('homestack.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        failed.append(f'{name}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

