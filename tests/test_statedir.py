"""The state dir's version: recorded on first use, older ones read, newer ones refused at start."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from homestack.errors import ConfigError
from homestack.statedir import STATE_FILE, STATE_FORMAT, STATE_VERSION, check_state_dir


def test_first_use_records_the_version(tmp_path):
    assert check_state_dir(tmp_path) == STATE_VERSION
    assert json.loads((tmp_path / STATE_FILE).read_text()) == {"format": STATE_FORMAT, "version": STATE_VERSION}
    assert check_state_dir(tmp_path) == STATE_VERSION  # and reads it back


@pytest.mark.parametrize("content, message", [
    ({"format": STATE_FORMAT, "version": STATE_VERSION + 1}, "written by a newer homestack"),
    ({"format": "something-else", "version": 1}, "not a homestack state file"),
    ("not json", "not a homestack state file"),
])
def test_unreadable_state_is_refused(tmp_path, content, message):
    (tmp_path / STATE_FILE).write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ConfigError, match=message):
        check_state_dir(tmp_path)


def test_serve_refuses_a_newer_state_dir_with_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / STATE_FILE).write_text(json.dumps({"format": STATE_FORMAT, "version": STATE_VERSION + 1}))
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"data_dir: {data}\nmodels: {{}}\n")
    result = subprocess.run([sys.executable, "-m", "homestack", "serve", "--config", str(fleet), "--port", "0",
                             "--no-knowledge"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "written by a newer homestack" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
