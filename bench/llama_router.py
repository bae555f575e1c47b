"""llama-server's own router mode, the reference the swap-storm and cold-start benchmarks measure
homestack against: one llama-server process that starts a llama-server per model on demand, at most
``--models-max`` at once (least recently used first out), from a preset file (INI) holding, per
model, the same options homestack's llama.cpp runner passes (``llama_cpp_argv``).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from homestack.artifacts import resolve_model
from homestack.config.schema import default_data_dir
from homestack.runners.binaries import find_llama_server
from homestack.runners.kinds.llama_cpp import LlamaCppModel, llama_cpp_argv

_ROUTER_SETS = {"host", "port", "alias"}  # the router gives each model instance its own
_SPAWNED = "spawning server instance with name="  # the router's log line for each model load


def preset_ini(models: dict[str, str], settings: dict) -> str:
    """The preset file: one section per model (name -> homestack model reference), ``settings`` being
    LlamaCppModel fields (ctx_size, parallel...) shared by all."""
    sections = ["version = 1"]
    for name, ref in models.items():
        spec = LlamaCppModel(runner="llama.cpp", model=ref, **settings)
        argv = llama_cpp_argv("llama-server", name, spec, 0, resolve_model(ref, default_data_dir()))
        sections.append(f"[{name}]\n" + "\n".join(f"{key} = {value}" for key, value in _options(argv[1:])))
    return "\n\n".join(sections) + "\n"


def _options(args: list[str]) -> list[tuple[str, str]]:
    """``--option value`` pairs as INI keys; an option without a value is ``true``."""
    options, i = [], 0
    while i < len(args):
        key, value = args[i].lstrip("-"), "true"
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            value, i = args[i + 1], i + 1
        i += 1
        if key not in _ROUTER_SETS:
            options.append((key, value))
    return options


class Router:
    """A running router on an OS-picked port; ``url`` is its origin (the API is under /v1)."""

    def __init__(self, workdir: Path, models: dict[str, str], settings: dict, models_max: int = 1):
        preset = workdir / "models.ini"
        preset.write_text(preset_ini(models, settings))
        self.log_path = workdir / "router.log"
        self._log = self.log_path.open("w")
        argv = [str(find_llama_server(None)), "--models-preset", str(preset), "--models-max", str(models_max),
                "--host", "127.0.0.1", "--port", "0"]
        self._proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = self._wait_listening()

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if not line.startswith("[") and "listening on http://" in line:
                    return "http://" + line.split("listening on http://", 1)[1].strip()
            if self._proc.poll() is not None:
                raise SystemExit(f"bench: llama-server router exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        self.stop()
        raise SystemExit("bench: llama-server router did not start in 60 s")

    def loads(self) -> int:
        """Model instances started so far."""
        return self.log_path.read_text(errors="replace").count(_SPAWNED)

    def status(self, model: str) -> str:
        with urllib.request.urlopen(self.url + "/models", timeout=30) as resp:
            models = json.loads(resp.read())["data"]
        return next(m["status"]["value"] for m in models if m["id"] == model)

    def unload(self, model: str) -> None:
        """Unload ``model`` through the router's API and wait until its process is gone."""
        request = urllib.request.Request(self.url + "/models/unload", json.dumps({"model": model}).encode(),
                                         {"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError:  # not loaded
            pass
        deadline = time.monotonic() + 60
        while self.status(model) != "unloaded":
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: the router did not unload {model} in 60 s")
            time.sleep(0.02)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
