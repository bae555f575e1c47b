"""`homestack cost` reproduces a published example and prices the shipped cloud table."""

from __future__ import annotations

import json
import subprocess
import sys


def _cost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "homestack", "cost", *args], capture_output=True, text=True,
                          timeout=60)


def test_published_example_as_written():
    # Hardware EUR 5,800; self-hosted EUR 256/month against cloud EUR 2,150/month at 2M tokens/day.
    result = _cost("--capex", "5800", "--monthly", "256", "--cloud-monthly", "2150")
    assert result.returncode == 0, result.stderr
    assert "break-even after 3.1 months" in result.stdout
    assert "EUR 256.00/month" in result.stdout


def test_from_a_bench_file_against_the_price_table(tmp_path):
    bench = {"format": "homestack-bench/1", "runs": [
        {"summary": {"output_tokens_per_s": 50.0, "power_w": None}},
        {"summary": {"output_tokens_per_s": 80.0, "power_w": 120.0}},
    ]}
    (tmp_path / "run.json").write_text(json.dumps(bench))
    result = _cost("--capex", "2000", "--bench", str(tmp_path / "run.json"), "--price-kwh", "0.4",
                   "--cloud", "gpt-4o", "--json")
    report = json.loads(result.stdout)
    own = report["self_hosted"]
    # 500k output tokens a day at 80 tokens/s, at the 120 W measured during that run
    assert abs(own["busy_hours_per_day"] - 500_000 / 80 / 3600) < 1e-9
    assert abs(own["parts"]["electricity"] - 120 * own["busy_hours_per_day"] / 1000 * 0.4 * 365.25 / 12) < 1e-9
    (gpt4o,) = report["clouds"]
    assert gpt4o["option"] == "gpt-4o" and gpt4o["break_even_months"] > 0
    missing = _cost("--capex", "1")
    assert missing.returncode == 1 and "--monthly" in missing.stderr and "Traceback" not in missing.stderr
