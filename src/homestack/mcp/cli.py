"""`homestack mcp`, and the MCP endpoint `homestack knowledge serve` mounts at /mcp.

MCP builds on knowledge, never the other way round: the top-level CLI hands
`knowledge_endpoint` to the knowledge service. Imports happen when a command runs.
"""

from __future__ import annotations

import argparse


def knowledge_endpoint(knowledge, host: str):
    """The knowledge service's /mcp app and the context its sessions run in (a service.server.Endpoint)."""
    from .server import build_mcp

    mcp = build_mcp(knowledge)
    return mcp.streamable_http_app(host=host), mcp.session_manager.run


def _mcp(args: argparse.Namespace) -> None:
    from ..knowledge.client.http import KnowledgeClient
    from .stdio import run_stdio

    run_stdio(KnowledgeClient(args.url), read_only=args.read_only)


def register(command) -> None:
    """Add `mcp` to the `homestack` parser."""
    p = command("mcp", _mcp, "Serve the knowledge tools over MCP on stdio (for agents).")
    p.add_argument("--url", help="knowledge service URL (default $HOMESTACK_KNOWLEDGE_URL or http://127.0.0.1:8081)")
    p.add_argument("--read-only", action="store_true", help="leave out add_document")
