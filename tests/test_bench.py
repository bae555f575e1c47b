"""`homestack bench` end to end, against the default-fleet gateway and its real llama.cpp runner."""

from __future__ import annotations

import copy
import json

import pytest

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def sweep(default_gateway, tmp_path_factory):
    """The issue's command (its sizes cut to keep the test short): one sweep the tests below read."""
    out = tmp_path_factory.mktemp("bench") / "run.json"
    result = default_gateway.cli(
        "bench", "--url", default_gateway.url + "/v1", "--model", MODEL, "--concurrency", "1,2", "--requests", "3",
        "--input-tokens", "24", "--output-tokens", "5", "-o", str(out), timeout=600)
    return result, json.loads(out.read_text()), out


def test_sweep_measures_every_request_token_by_token(sweep):
    result, doc, _ = sweep
    assert [(r["mode"], r["value"]) for r in doc["runs"]] == [("concurrency", 1), ("concurrency", 2)]
    assert doc["workload"] == {"source": "synthetic", "tokens_exact": True}
    for run in doc["runs"]:
        summary, samples = run["summary"], run["samples"]
        assert summary["ok"] == 3 and summary["errors"] == {}
        assert {s["output_tokens"] for s in samples} == {5}  # ignore_eos: exactly the tokens asked for
        assert len({s["input_tokens"] for s in samples}) == 1  # the same exact prompt length every time
        assert all(len(s["itl"]) == 4 and s["ttft"] > 0 and s["tpot"] > 0 for s in samples)
        for figure in ("ttft", "tpot", "itl", "e2e"):
            assert set(summary[figure]) == {"mean", "p50", "p90", "p99", "n"}
        assert summary["output_tokens_per_s"] > 0 and summary["requests_per_s"] > 0
    assert doc["git_commit"] and doc["machine"]["cpus"] and doc["fleet"]["manifest_sha256"]
    assert any(m["name"] == MODEL and m["version"] for m in doc["fleet"]["models"])
    assert doc["settings"]["concurrency"] == [1, 2] and doc["settings"]["input_tokens"] == 24
    assert "TTFT p50 ms" in result.stdout and "c=2" in result.stdout


def test_compare_gives_verdicts_from_the_spread_and_writes_plots(sweep, default_gateway, tmp_path):
    _, doc, measured = sweep
    # Enough samples for a verdict (three per level cannot reach p < 0.05): the measured ones, eight times;
    # the "after" file's first tokens come 3x later.
    before, after = copy.deepcopy(doc), copy.deepcopy(doc)
    for run in before["runs"] + after["runs"]:
        run["samples"] = [dict(s) for s in run["samples"] * 8]
    for run in after["runs"]:
        for sample in run["samples"]:
            sample["ttft"] *= 3
    (tmp_path / "before.json").write_text(json.dumps(before))
    (tmp_path / "after.json").write_text(json.dumps(after))
    result = default_gateway.cli("bench", "compare", str(tmp_path / "before.json"), str(tmp_path / "after.json"),
                                 "--plots", str(tmp_path / "plots"))
    ttft_rows = [line for line in result.stdout.splitlines() if "ttft p50" in line]
    assert len(ttft_rows) == 2 and all("worse" in line for line in ttft_rows)
    assert any("e2e p50" in line and "within noise" in line for line in result.stdout.splitlines())
    for name in ("latency_cdf.png", "throughput.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    same = default_gateway.cli("bench", "compare", str(measured), str(measured)).stdout
    assert "worse" not in same and "better" not in same and "within noise" in same


def test_cold_start_puts_client_load_beside_the_runner_ready_time(default_gateway, tmp_path):
    out = tmp_path / "cold.json"
    result = default_gateway.cli("bench", "--url", default_gateway.url + "/v1", "--model", MODEL, "--cold",
                                 "--requests", "2", "--input-tokens", "8", "--output-tokens", "2", "-o", str(out))
    run = json.loads(out.read_text())["runs"][0]
    assert run["mode"] == "cold" and run["summary"]["ok"] == 2
    for sample in run["samples"]:
        cold = sample["cold"]
        # Figures, not timings to assert: a load seen by the client can come out below the warm
        # reference it is measured against on a busy machine.
        assert cold["runner_ready_s"] > 0
        assert isinstance(cold["client_load_s"], float) and isinstance(cold["gateway_overhead_s"], float)
    assert run["summary"]["cold"]["gateway_overhead_s"]["n"] == 2
    assert "runner ready" in result.stdout and "gateway overhead" in result.stdout


def test_poisson_rate_on_completions_with_goodput(default_gateway, tmp_path):
    out = tmp_path / "rate.json"
    default_gateway.cli("bench", "--url", default_gateway.url + "/v1", "--model", MODEL, "--api", "completions",
                        "--rate", "20", "--requests", "3", "--input-tokens", "8", "--output-tokens", "2",
                        "--slo", "ttft=60s,tpot=10s", "-o", str(out))
    run = json.loads(out.read_text())["runs"][0]
    assert run["mode"] == "rate" and run["value"] == 20
    assert run["summary"]["ok"] == 3 and run["summary"]["goodput"] == 1.0


def test_bench_errors_are_one_line(default_gateway):
    result = default_gateway.cli("bench", "--url", default_gateway.url + "/v1", "--model", "no-such-model",
                                 "--requests", "1", "--output-tokens", "2", check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "HTTP 404: model 'no-such-model' does not exist" in result.stderr


def test_the_code_edit_workload_ships_chats_whose_answer_repeats_the_prompt():
    from homestack.bench.workload import from_jsonl
    from homestack.bench.workloads import SHIPPED_WORKLOADS, shipped_workload

    assert "code-edit" in SHIPPED_WORKLOADS
    requests = from_jsonl(shipped_workload("code-edit"), None)
    assert len(requests) >= 6 and {r["api"] for r in requests} == {"chat"}
    for r in requests:
        prompt = r["body"]["messages"][0]["content"]
        assert prompt.startswith("Rewrite this Python function with one change:") and "def " in prompt
