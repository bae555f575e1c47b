"""Shared fixtures: an isolated data dir and environment, and real gateways on OS-picked ports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers import FAKE_GPUS, GatewayProcess


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMESTACK_HOME", str(tmp_path / "home"))
    for var in ("HOMESTACK_URL", "HOMESTACK_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def default_gateway(tmp_path_factory: pytest.TempPathFactory):
    """The gateway with the embedded default fleet, shared by the API tests."""
    gw = GatewayProcess(tmp_path_factory.mktemp("default-gateway"), config=None)
    yield gw
    gw.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path):
    """Start gateways with a fleet given as YAML text; all are stopped after the test."""
    started: list[GatewayProcess] = []

    def start(fleet_yaml: str | None, *args: str, env: dict[str, str] | None = None, wait: bool = True):
        home = tmp_path / f"gw{len(started)}"
        gw = GatewayProcess(home, config=fleet_yaml, args=args, env=env, wait=wait)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def openai_client(default_gateway):
    return default_gateway.openai()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Every llama-server the tests start (each gateway's runners inherit this environment) computes on
    # one thread. The suite runs several test files at once on a couple of cores: llama-server's default
    # (one thread per core) has each process's threads wait for each other at every step of every token
    # while the others hold the cores, and the whole suite slows down. What is tested is the same.
    os.environ.setdefault("LLAMA_ARG_THREADS", "1")
    if os.environ.get("HOMESTACK_FAKE_GPUS"):
        # The suite on a fake NVIDIA host (e.g. HOMESTACK_FAKE_GPUS=24GiB,24GiB): the fake pynvml
        # is found first by this process and every homestack process the tests start.
        fake = str(FAKE_GPUS)
        sys.path.insert(0, fake)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [fake, os.environ.get("PYTHONPATH")]))


# Files that start first: the longest ones, so that no worker is left with one when the others are done
# (pytest-xdist hands out whole files, in collection order). The real vLLM engine, then minutes of
# real-model work.
_FIRST = ("vllm", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank: dict[Path, int] = {}
    for item in items:
        marks = {mark.name for mark in item.iter_markers()}
        tier = min((i for i, name in enumerate(_FIRST) if name in marks), default=len(_FIRST))
        rank[item.path] = min(rank.get(item.path, tier), tier)
    # Stable: a file's tests keep their order (some modules' tests run in sequence on one gateway).
    items.sort(key=lambda item: rank[item.path])
