"""systemd units for the gateway and the knowledge service, a sysusers.d entry and the files they read."""

from __future__ import annotations

from pathlib import Path

from .context import DeployContext, mebibytes

# Hardening both services share: they need the network and their state dir, nothing else of the host.
_HARDENING = """NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
CapabilityBoundingSet=
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
UMask=0027"""

_UNIT = """{header}[Unit]
Description={description}
Documentation=https://github.com/homestack/homestack
After=network-online.target{after}
Wants=network-online.target

[Service]
Type={type}
User={user}
Group={user}
ExecStart={exec_start}
EnvironmentFile=-{env_file}
Environment=HOMESTACK_HOME={state_dir} PYTHONUNBUFFERED=1
WorkingDirectory={state_dir}
{state_directory}ReadWritePaths={state_dir}
Restart=on-failure
RestartSec=2
TimeoutStartSec={start_timeout}
TimeoutStopSec=30
MemoryMax={memory_max}M
StandardOutput=journal
StandardError=journal
SyslogIdentifier={identifier}
{hardening}

[Install]
WantedBy=multi-user.target
"""

_ENV = """{header}# Secrets and settings for the homestack services (mode 0600, owner root): one VAR=value a line.
# HOMESTACK_API_KEY is the key the knowledge service uses to call the gateway when api_keys are set.
#HOMESTACK_API_KEY=
HF_HUB_OFFLINE=1
"""


def render(ctx: DeployContext) -> dict[str, str]:
    d = ctx.deploy
    fleet_file = d.config_dir / "fleet.yaml"
    common = {
        "user": d.user, "env_file": d.config_dir / "homestack.env", "state_dir": d.state_dir,
        "state_directory": _state_directory(d.state_dir), "hardening": _HARDENING,
        "header": ctx.header("systemd"),
    }
    startup = max((ctx.fleet.startup_timeout_for(m) for m in ctx.fleet.models.values() if m.pinned), default=0)
    files = {
        "homestack.service": _UNIT.format(
            **common, description="homestack gateway (OpenAI-compatible API over local model runners)",
            type="notify", after="", identifier="homestack", start_timeout=int(60 + startup),
            exec_start=f"{d.executable} serve --config {fleet_file}",
            memory_max=mebibytes(ctx.with_margin(ctx.resident_memory)),
        ),
        "fleet.yaml": ctx.fleet_yaml("systemd", data_dir=str(d.state_dir), **{"knowledge.supervise": False}),
        "homestack.env": _ENV.format(header=ctx.header("systemd")),
        "sysusers.d/homestack.conf": f"{ctx.header('systemd')}u {d.user} - \"homestack services\" {d.state_dir}\n",
    }
    if ctx.fleet.knowledge.enabled:
        files["homestack-knowledge.service"] = _UNIT.format(
            **common, description="homestack knowledge service (retrieval and cited answers)", type="exec",
            after=" homestack.service", identifier="homestack-knowledge", start_timeout=60,
            exec_start=f"{d.executable} knowledge serve --config {fleet_file}",
            memory_max=mebibytes(d.knowledge_memory),
        )
    return files


def _state_directory(state_dir: Path) -> str:
    """StateDirectory= creates the dir owned by the service user, when it is under /var/lib."""
    if state_dir.parent == Path("/var/lib"):
        return f"StateDirectory={state_dir.name}\nStateDirectoryMode=0750\n"
    return ""
