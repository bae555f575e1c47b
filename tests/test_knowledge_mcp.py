"""The MCP tools through the SDK's own client, over stdio (`homestack mcp`) and streamable HTTP (/mcp)."""

from __future__ import annotations

import json
import sys

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from knowledge_fixtures.docs import write_corpus
from knowledge_fixtures.service import KnowledgeProcess

TOOLS = {"search_knowledge", "add_document", "list_collections", "list_models", "fleet_status"}


@pytest.fixture(scope="module")
def service(default_gateway, tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus")
    ks = KnowledgeProcess(tmp_path_factory.mktemp("knowledge-mcp"), default_gateway.url,
                          config=f"knowledge:\n  allowed_paths: [{corpus}]\n")
    files = write_corpus(corpus)
    ks.kb("ingest", *map(str, files.values()), "-c", "docs")
    ks.files = files
    yield ks
    ks.stop()


def _client(service, kind: str):
    if kind == "http":
        return service.mcp()
    config = str(service.home / "fleet.yaml")  # its knowledge.allowed_paths: where add_document may read
    return Client(StdioServerParameters(command=sys.executable, env=service.env,
                                        args=["-m", "homestack", "mcp", "--url", service.url, "--config", config]))


def _result(call) -> object:
    assert not call.is_error, call.content
    return call.structured_content if call.structured_content is not None else json.loads(call.content[0].text)


def _unwrap(value):
    return value["result"] if isinstance(value, dict) and set(value) == {"result"} else value


@pytest.mark.parametrize("kind", ["stdio", "http"])
def test_tools_over_both_transports(service, kind):
    async def session():
        async with _client(service, kind) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools == TOOLS
            hits = _unwrap(_result(await client.call_tool(
                "search_knowledge", {"query": "sourdough baking temperature", "collection": "docs", "k": 2})))
            assert hits[0]["source"] == str(service.files["html"]) and hits[0]["heading"] == "Sourdough bread > Baking"
            filtered = _unwrap(_result(await client.call_tool("search_knowledge", {
                "query": "warranty", "collection": "docs", "filters": {"source": [str(service.files["markdown"])]}})))
            assert {h["source"] for h in filtered} == {str(service.files["markdown"])}
            added = _result(await client.call_tool("add_document", {
                "collection": f"notes-{kind}", "text": "The lighthouse keeper feeds the cat at dawn.",
                "metadata": {"source": "keeper.txt", "tags": ["log"]}}))
            assert added["added"] == 1
            found = _unwrap(_result(await client.call_tool(
                "search_knowledge", {"query": "who feeds the cat", "collection": f"notes-{kind}"})))
            assert found[0]["source"] == "keeper.txt" and found[0]["tags"] == ["log"]
            by_path = _result(await client.call_tool("add_document", {
                "collection": f"notes-{kind}", "path": str(service.files["pdf"])}))
            assert by_path["added"] == 1 and by_path["chunks"] == 3
            names = {c["name"] for c in _unwrap(_result(await client.call_tool("list_collections", {})))}
            assert {"docs", f"notes-{kind}"} <= names
            models = _result(await client.call_tool("list_models", {}))
            assert "minilm-l6-v2" in {m["id"] for m in models["data"]}
            fleet = _result(await client.call_tool("fleet_status", {}))
            assert "smollm2-135m-instruct" in {r["name"] for r in fleet["running"]}
            missing = await client.call_tool("search_knowledge", {"query": "x", "collection": "nope"})
            assert missing.is_error and "'nope' does not exist" in missing.content[0].text

    anyio.run(session)


def test_read_only_service_offers_no_add_document(default_gateway, tmp_path):
    ks = KnowledgeProcess(tmp_path / "ro", default_gateway.url, config="knowledge:\n  read_only: true\n")
    try:
        async def session():
            async with ks.mcp() as client:
                return {t.name for t in (await client.list_tools()).tools}

        assert anyio.run(session) == TOOLS - {"add_document"}
    finally:
        ks.stop()
