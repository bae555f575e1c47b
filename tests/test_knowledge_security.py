"""Attacks on the knowledge service and its MCP endpoint: no key, the wrong key, foreign Host and
Origin headers, files outside knowledge.allowed_paths (by path, `..` and symlink)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from homestack.errors import Forbidden, Unauthorized
from homestack.keys import Key, KeyRing, Role
from homestack.knowledge.ingest.allowed import allowed_file
from homestack.knowledge.service.access import Access
from homestack.knowledge.service.app import routes
from knowledge_fixtures.service import KnowledgeProcess

SECRET = "The vault combination is 31-41-59, said the operator's private note."
KEYS = """
keys:
  kb-tests:
    secret_env: KB_TESTS_KEY
    roles: [knowledge-read, knowledge-write]
  reader:
    secret_env: READER_KEY
    roles: [knowledge-read]
  chat-only:
    secret_env: CHAT_KEY
    roles: [inference]
"""
READER, CHAT = "reader-secret-0123456789", "chat-secret-0123456789"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "attacker", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paths")
    (root / "allowed").mkdir()
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_text(SECRET + "\n")
    (root / "allowed" / "notes.md").write_text("# Notes\n\nThe lighthouse keeper feeds the cat at dawn.\n")
    (root / "allowed" / "link.txt").symlink_to(root / "outside" / "secret.txt")
    (root / "allowed" / "escape").symlink_to(root / "outside")
    return {"allowed": root / "allowed", "secret": root / "outside" / "secret.txt"}


@pytest.fixture(scope="module")
def service(default_gateway, tmp_path_factory, files):
    config = f"knowledge:\n  allowed_paths: [{files['allowed']}]\n" + KEYS
    ks = KnowledgeProcess(tmp_path_factory.mktemp("knowledge-sec"), default_gateway.url, config=config,
                          keys={"READER_KEY": READER, "CHAT_KEY": CHAT})
    yield ks
    ks.stop()


def _calls():
    """Every route of the service, with its path parameters filled in."""
    for route in routes():
        for method in sorted(route.methods - {"HEAD"}):
            yield method, route.path.replace("{name}", "docs")


def test_every_route_but_health_and_the_api_document_needs_a_key_with_the_knowledge_roles(service):
    calls = list(_calls()) + [("POST", "/mcp"), ("GET", "/mcp")]
    assert len(calls) >= 17
    for method, path in calls:
        if path in ("/health", "/openapi.json"):  # public: liveness, and the API's shape (no data)
            assert httpx.request(method, service.url + path).status_code == 200
            continue
        for key, status in ((None, 401), ("not-a-key", 401), (CHAT, 403)):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            resp = httpx.request(method, service.url + path, headers=headers, json={}, timeout=30)
            assert resp.status_code == status, (method, path, key, resp.text)
            assert resp.json()["error"]["type"] in ("authentication_error", "permission_error")
            assert (key or "no-key") not in resp.text


def test_a_read_key_reads_but_never_writes(service):
    assert service.api("POST", "/collections", json={"name": "mine"}).status_code == 201
    assert service.api("GET", "/collections", key=READER).status_code == 200
    for method, path in (("POST", "/collections"), ("DELETE", "/collections/mine"), ("GET", "/backup"),
                         ("POST", "/collections/mine/documents"), ("POST", "/restore")):
        resp = service.api(method, path, key=READER, json={"name": "x"})
        assert resp.status_code == 403 and "knowledge-write" in resp.json()["error"]["message"], (method, path)
    assert service.api("GET", "/collections/mine").status_code == 200  # still there


def test_mcp_without_credentials_can_neither_ingest_nor_search(service, files):
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "add_document", "arguments": {"path": str(files["secret"])}}}
    for body in (INITIALIZE, call):
        resp = httpx.post(service.url + "/mcp", json=body, headers=MCP_HEADERS, timeout=30)
        assert resp.status_code == 401

    async def sdk_client():
        async with service.mcp(key=None) as client:
            await client.call_tool("search_knowledge", {"query": "vault combination"})

    with pytest.raises(Exception):
        anyio.run(sdk_client)
    hits = service.api("POST", "/search", json={"collection": "default", "query": "vault combination"})
    assert SECRET not in hits.text  # nothing of it got in


def _tool(client, name: str, **arguments):
    return client.call_tool(name, arguments)


def test_mcp_add_document_reads_only_inside_allowed_paths(service, files):
    allowed = files["allowed"]
    attacks = {
        str(files["secret"]): "outside knowledge.allowed_paths",
        str(allowed / ".." / "outside" / "secret.txt"): "outside knowledge.allowed_paths",
        str(allowed / "link.txt"): "outside knowledge.allowed_paths",  # a symlink inside, pointing out
        str(allowed / "escape" / "secret.txt"): "outside knowledge.allowed_paths",  # a linked folder
        "/etc/hostname": "outside knowledge.allowed_paths",
    }

    async def session():
        async with service.mcp() as client:
            for path, why in attacks.items():
                result = await _tool(client, "add_document", collection="loot", path=path)
                assert result.is_error and why in result.content[0].text, (path, result.content)
            ok = await _tool(client, "add_document", collection="notes", path=str(allowed / "notes.md"))
            assert not ok.is_error, ok.content
        async with service.mcp(key=READER) as client:  # reads, never writes
            denied = await _tool(client, "add_document", collection="notes", text="planted")
            assert denied.is_error and "knowledge-write" in denied.content[0].text
            found = await _tool(client, "search_knowledge", query="who feeds the cat", collection="notes")
            assert not found.is_error and "lighthouse keeper" in found.content[0].text

    anyio.run(session)
    assert service.api("GET", "/collections/loot").status_code == 404  # nothing was ingested


@pytest.mark.parametrize("header, value, status", [
    ("Origin", "http://evil.example", 403),
    ("Origin", "http://127.0.0.1.evil.example:8081", 403),
    ("Host", "evil.example", 421),
    ("Host", "evil.example:8081", 421),
    ("Origin", "http://localhost:3000", 200),  # allowed by default: loopback, any port
])
def test_mcp_checks_host_and_origin(service, header, value, status):
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {service.key}", header: value}
    assert httpx.post(service.url + "/mcp", json=INITIALIZE, headers=headers, timeout=30).status_code == status


def test_mcp_checks_host_and_origin_on_any_address(default_gateway, tmp_path):
    """The SDK checks Host and Origin by itself only when bound to 127.0.0.1 or ::1; homestack always."""
    ks = KnowledgeProcess(tmp_path / "ks", default_gateway.url, host="127.0.0.2")
    try:
        for header, value, status in (("Origin", "http://evil.example", 403), ("Host", "evil.example", 421),
                                      ("Origin", "http://localhost:3000", 200)):
            headers = {**MCP_HEADERS, "Authorization": f"Bearer {ks.key}", header: value}
            assert httpx.post(ks.url + "/mcp", json=INITIALIZE, headers=headers, timeout=30).status_code == status
    finally:
        ks.stop()


@pytest.mark.parametrize("name, roots, allowed", [
    ("allowed/notes.md", ["allowed"], True),
    ("allowed", ["allowed"], True),
    ("allowed/../outside/secret.txt", ["allowed"], False),
    ("allowed/link.txt", ["allowed"], False),
    ("allowed/escape/secret.txt", ["allowed"], False),
    ("outside/secret.txt", ["allowed"], False),
    ("allowed-sibling/x.txt", ["allowed"], False),  # a prefix of the name is not a parent
    ("allowed/notes.md", [], False),  # no folders: path ingest is off
])
def test_allowed_file(files, name, roots, allowed):
    base = files["allowed"].parent
    if allowed:
        assert allowed_file(str(base / name), [base / r for r in roots]) == (base / name).resolve()
    else:
        with pytest.raises(Forbidden) as caught:
            allowed_file(str(base / name), [base / r for r in roots])
        assert ("path ingest is off" if not roots else "outside") in caught.value.message


def _ring(**keys: frozenset) -> KeyRing:
    from homestack.keys.ring import digest

    return KeyRing({digest(secret): Key(secret, roles) for secret, roles in keys.items()})


READ, WRITE = Role.KNOWLEDGE_READ, Role.KNOWLEDGE_WRITE


@pytest.mark.parametrize("access, authorization, role, outcome", [
    (Access(_ring(), "tok"), b"Bearer tok", WRITE, "gateway"),
    (Access(_ring(), "tok"), None, READ, Unauthorized),
    (Access(_ring(), "tok"), b"Bearer tok2", READ, Unauthorized),
    (Access(_ring(), "tok"), b"Bearer to", READ, Unauthorized),
    (Access(_ring(r=frozenset({READ}))), b"Bearer r", READ, "r"),
    (Access(_ring(r=frozenset({READ}))), b"Bearer r", WRITE, Forbidden),
    (Access(_ring(i=frozenset({Role.INFERENCE}))), b"Bearer i", READ, Forbidden),
    (Access(_ring(), None), b"Bearer anything", READ, Unauthorized),
    (Access(_ring(), None, open=True), None, WRITE, None),
    (Access(_ring(), "tok"), None, Role.PUBLIC, None),
])
def test_access_decisions(access, authorization, role, outcome):
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            access.check(authorization, role)
    else:
        key = access.check(authorization, role)
        assert (key.name if key else None) == outcome


@pytest.mark.parametrize("args, message", [
    ([], "refusing to start the knowledge service without keys"),
    (["--no-auth", "--host", "0.0.0.0"], "refusing --no-auth on 0.0.0.0"),
])
def test_a_service_alone_without_keys_refuses_to_start(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "homestack", "knowledge", "serve", "--port", "0", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
