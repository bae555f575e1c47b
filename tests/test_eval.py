"""`homestack eval` end to end against the default-fleet gateway's real models."""

from __future__ import annotations

import json

ISSUE_LINE = ('{"messages": [{"role": "user", "content": "What is 2+2? Answer with a number."}], '
              '"check": {"type": "contains", "value": "4"}}')


def test_eval_as_written_with_the_issue_suite_line(default_gateway, tmp_path):
    suite = tmp_path / "SUITE.jsonl"
    suite.write_text(ISSUE_LINE + "\n")
    out = tmp_path / "eval.json"
    result = default_gateway.cli("eval", "--url", default_gateway.url + "/v1", "--model", "smollm2-135m-instruct",
                                 "--suite", str(suite), "-o", str(out), "--max-tokens", "16")
    report = json.loads(out.read_text())["models"]["smollm2-135m-instruct"]["SUITE"]
    (item,) = report["results"]
    assert item["id"] == "SUITE-1" and item["answer"] and item["latency"] > 0
    assert item["passed"] == ("4" in item["answer"]) and report["passed"] == int(item["passed"])
    assert "SUITE" in result.stdout


def test_shipped_suites_side_by_side_with_determinism(default_gateway, tmp_path):
    out = tmp_path / "eval.json"
    result = default_gateway.cli(
        "eval", "--url", default_gateway.url + "/v1", "--model", "smollm2-135m-instruct,gemma-3-270m",
        "--suite", "arithmetic", "--suite", "instructions", "--determinism", "2", "--limit", "2", "--max-tokens", "12", "-o", str(out), timeout=900)
    doc = json.loads(out.read_text())
    assert doc["settings"]["temperature"] == 0 and doc["settings"]["seed"] == 1234
    for model in ("smollm2-135m-instruct", "gemma-3-270m"):
        for suite in ("arithmetic", "instructions"):
            report = doc["models"][model][suite]
            assert 0 <= report["score"] <= 1 and report["items"] == 2
            assert 0 <= report["determinism"] <= 1
            assert all("identical" in r for r in report["results"])
    smollm2 = doc["models"]["smollm2-135m-instruct"]
    assert 0 < smollm2["arithmetic"]["passed"] + smollm2["instructions"]["passed"]  # the easiest items pass
    assert "gemma-3-270m" in result.stdout and "det " in result.stdout


def test_eval_suite_errors_name_the_line(default_gateway, tmp_path):
    suite = tmp_path / "bad.jsonl"
    suite.write_text('{"messages": [], "check": {"type": "nope"}}\n')
    result = default_gateway.cli("eval", "--model", "smollm2", "--suite", str(suite), check=False)
    assert result.returncode == 1 and f"{suite}:1: check" in result.stderr and "Traceback" not in result.stderr
