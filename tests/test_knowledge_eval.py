"""`kb eval`: metrics checked against hand-computed cases, then a small BEIR dataset end to end."""

from __future__ import annotations

import json
import math

import pytest

from homestack.knowledge.evaluation import metrics
from knowledge_fixtures.service import KnowledgeProcess

RANKED = ["d3", "d1", "d7", "d2", "d9"]
RELEVANT = {"d1": 2, "d2": 1, "d5": 1, "d8": 0}  # d8 judged not relevant


def test_recall_and_precision_by_hand():
    assert metrics.recall_at(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)  # d1 of {d1, d2, d5}
    assert metrics.recall_at(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)  # d1, d2
    assert metrics.precision_at(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)
    assert metrics.precision_at(RANKED, RELEVANT, 1) == 0.0
    assert metrics.recall_at(RANKED, {"d8": 0}, 5) == 0.0


def test_mrr_by_hand():
    assert metrics.mrr_at(RANKED, RELEVANT, 10) == pytest.approx(1 / 2)  # first relevant at rank 2
    assert metrics.mrr_at(RANKED, RELEVANT, 1) == 0.0
    assert metrics.mrr_at(["d5"], RELEVANT) == 1.0


def test_ndcg_by_hand():
    # DCG = 2/log2(3) + 1/log2(5); ideal order d1 (2), d2 (1), d5 (1): 2/log2(2) + 1/log2(3) + 1/log2(4)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / 1 + 1 / math.log2(3) + 1 / 2
    assert metrics.ndcg_at(RANKED, RELEVANT, 10) == pytest.approx(dcg / idcg)
    assert metrics.ndcg_at(["d1", "d2", "d5"], RELEVANT, 10) == pytest.approx(1.0)
    assert metrics.ndcg_at(RANKED, {}, 10) == 0.0


def test_percentile_interpolates():
    assert metrics.percentile([1, 2, 3, 4], 50) == 2.5
    assert metrics.percentile([10, 20, 30, 40, 50], 95) == pytest.approx(48.0)
    assert metrics.percentile([7], 99) == 7


def _write_beir(folder):
    docs = {
        "bike": ("Bicycles", "A bicycle chain needs oil every few hundred kilometres to stay quiet."),
        "tea": ("Green tea", "Green tea is brewed with water at eighty degrees for two minutes."),
        "moon": ("The Moon", "The Moon orbits the Earth once every twenty-seven days."),
        "rust": ("Rust", "Iron rusts when it meets water and oxygen over time."),
        "bread": ("Bread", "Bread dough rises because yeast produces carbon dioxide."),
    }
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, (t, x) in docs.items()))
    queries = {"q1": "how often should I oil my bike chain", "q2": "temperature for brewing green tea",
               "q3": "how long does the moon take to circle the earth", "q4": "why does dough rise"}
    (folder / "queries.jsonl").write_text("\n".join(json.dumps({"_id": q, "text": t}) for q, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\tbike\t1\nq2\ttea\t1\nq3\tmoon\t1\nq4\tbread\t1\n")


def test_eval_on_a_small_beir_dataset(default_gateway, tmp_path):
    _write_beir(tmp_path / "beir")
    ks = KnowledgeProcess(tmp_path / "ks", default_gateway.url)
    try:
        paths = [f"--corpus={tmp_path / 'beir/corpus.jsonl'}", f"--queries={tmp_path / 'beir/queries.jsonl'}",
                 f"--qrels={tmp_path / 'beir/qrels/test.tsv'}"]
        report = json.loads(ks.kb("eval", *paths, "-k", "3", "--json").stdout)
        assert (report["documents"], report["queries"]) == (5, 4)
        for mode in ("dense", "hybrid"):
            assert report["modes"][mode]["recall@3"] == 1.0 and report["modes"][mode]["mrr@10"] == 1.0, mode
        assert set(report["modes"]["sparse"]) == {"recall@3", "precision@3", "mrr@10", "ndcg@10",
                                                  "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"}
        assert json.loads(ks.kb("collections", "--json").stdout) == []  # the scratch collection is gone
        table = ks.kb("eval", *paths).stdout
        assert "hybrid" in table and "ndcg@10" in table
        bad = ks.kb("eval", f"--corpus={tmp_path}/missing.jsonl", *paths[1:], check=False)
        assert bad.returncode == 1 and "cannot read the corpus" in bad.stderr
    finally:
        ks.stop()
