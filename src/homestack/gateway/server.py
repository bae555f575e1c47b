"""Running the gateway: validate, bind, refuse unsafe exposure, serve with uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from ..config import DEFAULT_FLEET, FleetConfig
from ..errors import ConfigError
from ..keys.store import KeyStore
from ..listen import bind, is_loopback, url_of
from ..notify import notify_ready
from ..runners.process import free_port
from ..scheduler import Scheduler
from ..statedir import check_state_dir
from .app import GatewayApp
from .knowledge import KnowledgeSupervisor
from .protocol import with_header_deadline


def check_exposure(fleet: FleetConfig, no_auth: bool) -> None:
    has_keys = fleet.auth_enabled or KeyStore(fleet.data_dir).path.exists()
    if not has_keys and not no_auth and not is_loopback(fleet.host):
        raise ConfigError(
            f"refusing to serve on {fleet.host} without API keys: set keys in the fleet file or add one with "
            "`homestack keys add`, or pass --no-auth to allow anyone who can reach it"
        )


def _local(url: str, host: str) -> str:
    """The gateway's URL as a child on this machine reaches it (0.0.0.0 is not an address to call)."""
    if host in ("0.0.0.0", "::"):
        return url.replace(f"[{host}]" if ":" in host else host, "127.0.0.1")
    return url


def _banner(gateway: GatewayApp, url: str) -> None:
    lines = [f"homestack serving {url}/v1 (OpenAI-compatible; admin at {url}/admin)"]
    if gateway.services.knowledge_url:
        lines.append(f"  knowledge service {gateway.services.knowledge_url} (also at {url}/v1/knowledge/)")
    for runner in gateway.scheduler.runners.values():
        extra = f"aliases: {', '.join(runner.spec.aliases)}; " if runner.spec.aliases else ""
        pinned = "pinned; " if runner.pinned else ""
        lines.append(f"  model {runner.name}  [{runner.kind} {runner.version}] ({pinned}{extra}ttl {runner.ttl:g} s)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _check_data_dir(fleet: FleetConfig) -> None:
    try:
        (fleet.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"data_dir: cannot create {fleet.data_dir}: {exc.strerror} (set HOMESTACK_HOME or data_dir)") from None
    check_state_dir(fleet.data_dir)


def serve(fleet: FleetConfig, config: str | None, no_auth: bool = False) -> None:
    """Serve ``fleet`` (read from the file ``config``, or the embedded default when None)."""
    check_exposure(fleet, no_auth)
    _check_data_dir(fleet)
    scheduler = Scheduler.build(fleet, config or DEFAULT_FLEET)
    knowledge = fleet.knowledge
    knowledge_port = (knowledge.port or free_port()) if knowledge.enabled else None
    knowledge_url = f"http://{knowledge.host}:{knowledge_port}" if knowledge_port else None
    gateway = GatewayApp(fleet, scheduler, knowledge_url=knowledge_url, fleet_file=config)
    gateway.reload_on_hangup = True
    sock = bind(fleet.host, fleet.port)
    host = sock.getsockname()[0]
    url = url_of(sock, "https" if fleet.tls_cert else "http")
    if knowledge_port and knowledge.supervise:
        gateway.supervisor = KnowledgeSupervisor.for_fleet(
            config, knowledge.host, knowledge_port, knowledge.gateway_url or _local(url, host), fleet.data_dir,
            gateway.knowledge_token,
        )
    gateway.on_started = lambda: (_banner(gateway, url), notify_ready())
    config = uvicorn.Config(
        gateway,
        loop="uvloop",
        http=with_header_deadline(fleet.timeouts.headers),
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,  # the gateway never uses the client address
        timeout_graceful_shutdown=10,
        ssl_certfile=fleet.tls_cert,
        ssl_keyfile=fleet.tls_key,
    )
    uvicorn.Server(config).run(sockets=[sock])
