"""The restore drill: back up a fleet, wipe the machine, restore, and get the same keys and search results."""

from __future__ import annotations

import shutil
import subprocess
import sys

from knowledge_fixtures.docs import write_corpus
from knowledge_fixtures.service import KnowledgeProcess
from test_knowledge_durability import _searches


def _homestack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "homestack", *args], capture_output=True, text=True, timeout=300)


def test_backup_wipe_restore_gives_the_same_fleet_and_search_results(default_gateway, tmp_path):
    machine = tmp_path / "machine"
    fleet = f"data_dir: {machine / 'data'}\nmodels: {{}}\n"
    config = machine / "fleet.yaml"
    ks = KnowledgeProcess(machine, default_gateway.url, config=fleet)
    try:
        added = _homestack("keys", "add", "reader", "--role", "inference", "--config", str(config))
        assert added.returncode == 0, added.stderr
        files = write_corpus(tmp_path / "corpus")
        ks.kb("ingest", *map(str, files.values()), "-c", "docs")
        before = _searches(ks, "docs")
        done = _homestack("backup", str(tmp_path / "fleet.tar.gz"), "--config", str(config), "--knowledge-url", ks.url,
                          "--api-key", ks.key)
        assert done.returncode == 0, done.stderr
    finally:
        ks.stop()
    keys = (machine / "data" / "keys.json").read_bytes()
    written = config.read_text()  # the fleet file as the knowledge fixture completed it (its key)
    shutil.rmtree(machine)  # the machine is gone

    restored = _homestack("restore", str(tmp_path / "fleet.tar.gz"), "--config", str(config))
    assert restored.returncode == 0, restored.stderr
    assert config.read_text() == written and (machine / "data" / "keys.json").read_bytes() == keys
    assert (machine / "data" / "state.json").is_file()
    again = _homestack("restore", str(tmp_path / "fleet.tar.gz"), "--config", str(config))
    assert again.returncode == 1 and "exists" in again.stderr  # never overwrites
    fresh = KnowledgeProcess(machine, default_gateway.url, config=fleet)
    try:
        assert _searches(fresh, "docs") == before
    finally:
        fresh.stop()
