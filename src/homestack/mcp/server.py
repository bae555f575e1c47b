"""The MCP tools: search_knowledge, add_document (unless read-only), list_collections,
list_models, fleet_status. Errors reach the agent as one-line tool errors."""

from __future__ import annotations

import functools
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ..errors import HomestackError
from .backends import Backend, LocalBackend

_INSTRUCTIONS = (
    "homestack's knowledge base: search_knowledge finds passages (with file, page and heading to cite); "
    "list_collections shows what can be searched; list_models and fleet_status describe the local model fleet."
)


def _tool_errors(func):
    @functools.wraps(func)
    async def wrapper(*args, **kwargs):
        try:
            return await func(*args, **kwargs)
        except HomestackError as exc:
            raise ToolError(exc.message) from None
    return wrapper


def build_server(backend: Backend, read_only: bool) -> MCPServer:
    server = MCPServer("homestack", instructions=_INSTRUCTIONS, log_level="WARNING")

    @server.tool()
    @_tool_errors
    async def search_knowledge(query: str, collection: str = "default", k: int = 5,
                               filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Search a collection (hybrid: meaning and keywords). filters: {"source": [paths], "tags": [tags]}.
        Each result has source, page, heading, snippet, text and score."""
        return await backend.search(collection, query, k, filters or {})

    if not read_only:
        @server.tool()
        @_tool_errors
        async def add_document(ctx: Context, collection: str = "default", text: str | None = None,
                               path: str | None = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
            """Add one document to a collection (created if missing): inline text, or a file path
            (PDF, Markdown, HTML, text) inside the folders the operator allowed (knowledge.allowed_paths).
            metadata may carry "source" (a name for text) and "tags"."""
            return await backend.add(collection, text, path, metadata, ctx.request_context.request)

    @server.tool()
    @_tool_errors
    async def list_collections() -> list[dict[str, Any]]:
        """The collections, with their sources and chunk counts."""
        return await backend.collections()

    @server.tool()
    @_tool_errors
    async def list_models() -> dict[str, Any]:
        """The models the homestack gateway serves, and their state."""
        return await backend.models()

    @server.tool()
    @_tool_errors
    async def fleet_status() -> dict[str, Any]:
        """Every model's state, memory, queue and time to unload."""
        return await backend.fleet()

    return server


def build_mcp(knowledge) -> MCPServer:
    """The tools inside the knowledge service, for streamable HTTP at /mcp."""
    return build_server(LocalBackend(knowledge), knowledge.settings.read_only)
