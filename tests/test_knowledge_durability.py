"""An ingest killed half-way is repaired by the next run; a backup restores into an empty data dir."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from helpers import wait_until
from knowledge_fixtures.docs import write_corpus
from knowledge_fixtures.service import KnowledgeProcess

QUERIES = ["maintenance interval of the arm", "how to water tomatoes", "oven temperature for bread", "budget review"]


def _points(ks: KnowledgeProcess, collection: str) -> int:
    resp = ks.api("GET", f"/collections/{collection}")
    return resp.json()["points"] if resp.status_code == 200 else 0


def _searches(ks: KnowledgeProcess, collection: str) -> list:
    out = []
    for query in QUERIES:
        for mode in ("dense", "sparse", "hybrid"):
            results = ks.api("POST", "/search", json={"collection": collection, "query": query, "mode": mode}).json()
            # equal fused scores may come back in either order: compare ranks by (score, id)
            hits = [(-round(r["score"], 4), r["id"], r["source"], r["page"]) for r in results["results"]]
            out.append(sorted(hits))
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("durable")


def test_ingest_killed_half_way_leaves_no_duplicates_or_orphans(default_gateway, home, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(30):  # ~8 chunks each: several embedding batches
        body = "\n\n".join(f"File {i}, part {p}. " + f"Crates of type {i}-{p} are stacked on shelf {p}. " * 12
                           for p in range(8))
        (folder / f"doc{i:02d}.md").write_text(f"# Doc {i}\n\n{body}\n")
    ks = KnowledgeProcess(home, default_gateway.url)
    ks.kb("create", "big")
    cli = subprocess.Popen([sys.executable, "-m", "homestack", "kb", "ingest", str(folder), "-c", "big"],
                           env={**ks.env, "HOMESTACK_KNOWLEDGE_URL": ks.url},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: _points(ks, "big") > 0, timeout=120, interval=0.02, message="the first chunks")
    ks.stop(signal.SIGKILL)
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 1 and err.startswith("homestack: ")  # one line, no traceback

    ks = KnowledgeProcess(home, default_gateway.url)  # the same data dir: Qdrant replays its log
    try:
        partial = ks.api("GET", "/collections/big/sources").json()["sources"]
        assert sum(s["chunks"] for s in partial) < 240 or not all(s["complete"] for s in partial)
        report = json.loads(ks.kb("ingest", str(folder), "-c", "big", "--json").stdout)
        assert report["failed"] == [] and report["added"] + report["replaced"] + report["skipped"] == 30
        clean = json.loads(ks.kb("ingest", str(folder), "-c", "clean", "--json").stdout)
        sources = ks.api("GET", "/collections/big/sources").json()["sources"]
        assert len(sources) == 30 and all(s["complete"] for s in sources)
        assert _points(ks, "big") == clean["chunks"] == sum(s["chunks"] for s in sources)
        again = json.loads(ks.kb("ingest", str(folder), "-c", "big", "--json").stdout)
        assert again["skipped"] == 30
    finally:
        ks.stop()


def test_restore_drill_into_an_empty_data_dir(default_gateway, tmp_path):
    # Its own data dir and collections: the test runs alone or in any order.
    ks = KnowledgeProcess(tmp_path / "home", default_gateway.url)
    try:
        files = write_corpus(tmp_path / "corpus")
        ks.kb("ingest", *map(str, files.values()), "-c", "docs")
        ks.kb("ingest", str(files["markdown"]), "-c", "garden")
        before = {c: _searches(ks, c) for c in ("docs", "garden")}
        ks.kb("backup", str(tmp_path / "kb.tar.gz"))
        conflict = ks.kb("restore", str(tmp_path / "kb.tar.gz"), check=False)
        assert conflict.returncode == 1 and "already exist" in conflict.stderr
        ks.kb("ingest", str(files["text"]), "-c", "garden")  # changed since the backup
        assert _searches(ks, "garden") != before["garden"]
        replaced = ks.kb("restore", str(tmp_path / "kb.tar.gz"), "--replace").stdout
        assert "docs" in replaced and "garden" in replaced
        assert {c: _searches(ks, c) for c in ("docs", "garden")} == before  # --replace: as backed up
    finally:
        ks.stop()
    fresh = KnowledgeProcess(tmp_path / "fresh", default_gateway.url)
    try:
        assert json.loads(fresh.kb("collections", "--json").stdout) == []
        out = fresh.kb("restore", str(tmp_path / "kb.tar.gz")).stdout
        assert "docs" in out and "garden" in out
        assert {c: _searches(fresh, c) for c in ("docs", "garden")} == before
        assert before["docs"][0][0][2:] == (str(files["pdf"]), 2)
    finally:
        fresh.stop()
