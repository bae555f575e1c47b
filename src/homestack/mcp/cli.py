"""`homestack mcp`, and the MCP endpoint `homestack knowledge serve` mounts at /mcp.

MCP builds on knowledge, never the other way round: the top-level CLI hands
`knowledge_endpoint` to the knowledge service. Imports happen when a command runs.
"""

from __future__ import annotations

import argparse


def knowledge_endpoint(knowledge, host: str):
    """The knowledge service's /mcp app and the context its sessions run in (a service.server.Endpoint)."""
    from mcp.server.transport_security import TransportSecuritySettings

    from .server import build_mcp

    mcp = build_mcp(knowledge)
    settings = knowledge.settings
    # Host and Origin checked against the operator's lists whatever the bind address (the SDK only
    # checks them by itself on 127.0.0.1 and ::1): a foreign Host is refused (421), a foreign Origin
    # gets 403. The address bound is a Host clients use, never a rebinding attacker's name.
    hosts = list(settings.mcp_allowed_hosts)
    if host not in ("0.0.0.0", "::", ""):
        hosts.append(f"[{host}]:*" if ":" in host else f"{host}:*")
    security = TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=list(settings.mcp_allowed_origins))
    return mcp.streamable_http_app(host=host, transport_security=security), mcp.session_manager.run


def _mcp(args: argparse.Namespace) -> None:
    from ..config import load_fleet
    from ..knowledge.client.http import KnowledgeClient
    from .stdio import run_stdio

    roots = load_fleet(args.config).knowledge.allowed_paths  # add_document(path=...) reads here, in this process
    run_stdio(KnowledgeClient(args.url, api_key=args.api_key), roots, read_only=args.read_only)


def register(command) -> None:
    """Add `mcp` to the `homestack` parser."""
    p = command("mcp", _mcp, "Serve the knowledge tools over MCP on stdio (for agents).")
    p.add_argument("--url", help="knowledge service URL (default $HOMESTACK_KNOWLEDGE_URL or http://127.0.0.1:8081)")
    p.add_argument("--read-only", action="store_true", help="leave out add_document")
    p.add_argument("--api-key", metavar="KEY", help="key with the knowledge roles (default $HOMESTACK_API_KEY)")
    p.add_argument("--config", "-c", metavar="FILE",
                   help="fleet file whose knowledge.allowed_paths add_document(path=...) may read (default: none)")
