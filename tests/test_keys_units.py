"""Keys without a gateway: the store, the ring's refresh, the limits' decisions, secrets kept out of logs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from homestack.config import load_fleet
from homestack.errors import ConfigError, Conflict, NotFound
from homestack.gateway.routes import RouteTable, routes
from homestack.keys import Key, KeyRing, Role
from homestack.keys.limits import Limiter
from homestack.keys.store import KeyStore, sha256_hex
from homestack.runners.logs import LogTail, secrets_of
from homestack.runners.kinds.command import CommandModel
from homestack.runners.kinds.remote import RemoteModel

ISSUE_KEYS = """\
keys:
  ci-bot:
    secret_env: CI_BOT_KEY
    roles: [inference]
    models: ["smollm2*"]
    rpm: 10
  ops:
    secret_file: /run/secrets/homestack-ops
    roles: [admin, knowledge-write]
"""


def test_the_issue_fragment_passes_check_even_where_its_secret_file_is_missing(tmp_path):
    assert not os.path.exists("/run/secrets/homestack-ops")
    path = tmp_path / "fleet.yaml"
    path.write_text(ISSUE_KEYS)
    done = subprocess.run([sys.executable, "-m", "homestack", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # Secrets are read at serve: a missing one names its key and setting.
    fleet = load_fleet(path)
    with pytest.raises(ConfigError, match=r"keys\.ci-bot\.secret_env: the environment variable CI_BOT_KEY"):
        KeyRing.load(fleet)
    os.environ["CI_BOT_KEY"] = "ci-secret"
    try:
        with pytest.raises(ConfigError, match=r"keys\.ops\.secret_file: cannot read /run/secrets/homestack-ops"):
            KeyRing.load(fleet)
    finally:
        del os.environ["CI_BOT_KEY"]


def test_store_keeps_only_a_digest_in_a_private_file(tmp_path):
    store = KeyStore(tmp_path)
    secret = store.add("bot", ["inference"], models=["smollm2*"], rpm=10)
    assert secret.startswith("hs-") and len(secret) == 3 + 43
    text = store.path.read_text()
    assert secret not in text and sha256_hex(secret) in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.read()["bot"].models == ["smollm2*"] and store.read()["bot"].created
    with pytest.raises(Conflict):
        store.add("bot", ["admin"])
    with pytest.raises(Conflict, match="fleet file"):
        store.add("ops", ["admin"], taken={"ops"})
    rotated = store.rotate("bot")
    assert rotated != secret and store.read()["bot"].sha256 == sha256_hex(rotated)
    store.revoke("bot")
    assert store.read() == {}
    with pytest.raises(NotFound):
        store.revoke("bot")
    with pytest.raises(NotFound):
        store.rotate("bot")


def test_ring_follows_the_store_without_a_restart(tmp_path):
    fleet = load_fleet(None).model_copy(update={"data_dir": tmp_path})
    ring = KeyRing.load(fleet)
    assert not ring.enabled  # no keys anywhere: auth is off
    store = KeyStore(tmp_path)
    secret = store.add("bot", ["inference"])
    key = ring.lookup(secret.encode())  # a miss re-reads the store at once
    assert key is not None and key.name == "bot" and key.roles == {Role.INFERENCE} and ring.enabled
    new = store.rotate("bot")
    assert ring.lookup(new.encode()).name == "bot"
    assert ring.lookup(secret.encode()) is None
    store.revoke("bot")
    ring.refresh(force=True)
    assert ring.lookup(new.encode()) is None
    assert ring.enabled  # an emptied store still means keys are required: revoking never opens the gateway


def test_a_broken_store_is_refused_at_start_and_survived_while_serving(tmp_path, capsys):
    fleet = load_fleet(None).model_copy(update={"data_dir": tmp_path})
    store = KeyStore(tmp_path)
    secret = store.add("bot", ["admin"])
    ring = KeyRing.load(fleet)
    store.path.write_text("{not json")
    ring.refresh(force=True)
    assert ring.lookup(secret.encode()).name == "bot"  # the keys read before still hold
    assert "keys.json" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="keys.json"):
        KeyRing.load(fleet)


def _key(**limits) -> Key:
    return Key("k", frozenset({Role.INFERENCE}), **limits)


def test_rpm_is_exact_and_slides():
    limiter, key = Limiter(), _key(rpm=3)
    verdicts = [limiter.admit(key, 100.0 + i) for i in range(5)]
    assert [v.reason for v in verdicts] == [None, None, None, "rpm", "rpm"]
    assert verdicts[3].retry_after == 57  # the first request leaves the window at 160
    assert dict(verdicts[2].headers)[b"x-ratelimit-remaining-requests"] == b"0"
    assert dict(verdicts[0].headers)[b"x-ratelimit-limit-requests"] == b"3"
    assert limiter.admit(key, 160.5).reason is None  # 100 has left the window


def test_tpm_counts_finished_requests_tokens():
    limiter, key = Limiter(), _key(tpm=10)
    for now, tokens in ((0, 6), (1, 5)):
        assert limiter.admit(key, now).reason is None
        limiter.finish(key, tokens, now)
    verdict = limiter.admit(key, 2)
    assert verdict.reason == "tpm" and verdict.retry_after == 58  # 11 - 6 < 10 once the first leaves, at 60
    assert dict(verdict.headers)[b"x-ratelimit-remaining-tokens"] == b"0"
    assert limiter.admit(key, 60.5).reason is None


def test_concurrency_counts_requests_in_flight():
    limiter, key = Limiter(), _key(concurrency=2)
    assert [limiter.admit(key, 0).reason for _ in range(3)] == [None, None, "concurrency"]
    limiter.finish(key, 0, 1)
    assert limiter.admit(key, 1).reason is None


@pytest.mark.parametrize("now, expires, expired", [
    (datetime(2030, 1, 1, tzinfo=timezone.utc), None, False),
    (datetime(2030, 1, 1, tzinfo=timezone.utc), datetime(2030, 1, 2), False),
    (datetime(2030, 1, 2, tzinfo=timezone.utc), datetime(2030, 1, 2), True),
    (datetime(2030, 1, 1, tzinfo=timezone.utc), datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=-1))), False),
])
def test_expiry(now, expires, expired):
    assert _key(expires=expires).expired(now) is expired


@pytest.mark.parametrize("access, role", [("public", Role.PUBLIC), ("any", Role.ANY), ("admin", Role.ADMIN)])
def test_metrics_access_sets_the_metrics_route_role(access, role):
    fleet = load_fleet(None).model_copy(update={"metrics_access": access})
    assert RouteTable(routes(metrics_role=Role(fleet.metrics_access))).match("GET", "/metrics")[0].role is role


def test_knowledge_writes_need_knowledge_write_and_reads_knowledge_read():
    table = RouteTable(routes())
    writes = [("DELETE", "/v1/knowledge/collections/x"), ("POST", "/v1/knowledge/restore"),
              ("GET", "/v1/knowledge/backup"), ("DELETE", "/v1/knowledge/collections/x/sources"),
              ("POST", "/v1/knowledge/collections"), ("POST", "/v1/knowledge/collections/x/documents")]
    assert {table.match(m, p)[0].role for m, p in writes} == {Role.KNOWLEDGE_WRITE}
    reads = [r for r in table.routes if r.path.startswith("/v1/knowledge/") and (r.method, r.path) not in
             {(m, p.replace("/x", "/{name}")) for m, p in writes}]
    assert len(reads) == 9 and {r.role for r in reads} == {Role.KNOWLEDGE_READ}


def test_runner_secrets_are_redacted_in_its_log(tmp_path):
    remote = RemoteModel(runner="remote", url="http://h/v1", api_key="sk-upstream-123")
    command = CommandModel(runner="command", command=["srv", "--api-key", "cmd-secret", "--token=tok-secret", "--port",
                                                      "{port}"], env={"HF_TOKEN": "env-secret", "LANG": "C.UTF-8"})
    assert secrets_of(remote) == ("sk-upstream-123",)
    assert set(secrets_of(command)) == {"cmd-secret", "tok-secret", "env-secret"}
    log = LogTail(tmp_path / "x.log", secrets=secrets_of(command))
    log.write("starting: srv --api-key cmd-secret --token=tok-secret; env-secret; LANG=C.UTF-8")
    log.close()
    text = (tmp_path / "x.log").read_text()
    assert "secret" not in text.replace("***", "") and "C.UTF-8" in text and log.tail() == [text.strip()]
