"""`homestack render systemd|nginx|compose|kubernetes`: every file rendered from one fleet file and checked
by the real tool for its format (systemd-analyze, nginx -t, kubernetes-validate, the compose-spec schema)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ensure_debian, nginx_test_conf, self_signed

from homestack.config import load_fleet
from homestack.notify import notify_ready

FLEET = """
port: 8080
max_body_bytes: 1048576
memory: {cpu_budget: 4GiB}
knowledge: {qdrant_url: "http://127.0.0.1:6333"}
models:
  chat.small:
    runner: command
    command: [/bin/sleep, "{port}"]
    memory: 600MiB
    pinned: true
  coder:
    runner: command
    command: [/bin/sleep, "{port}"]
    memory: 1GiB
    aliases: [code]
  upstream:
    runner: remote
    url: http://127.0.0.1:9999/v1
deploy:
  executable: EXECUTABLE
  node_labels:
    chat.small: {kubernetes.io/hostname: box1}
  admin_networks: [127.0.0.1/32, 192.168.1.0/24]
"""
MIB = 1024**2
TARGETS_RENDERED = ("systemd", "nginx", "compose", "kubernetes")


def _bin(name: str) -> str:
    """A console script of the venv running the tests."""
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("render")
    fleet = root / "fleet.yaml"
    executable = root / "homestack"  # systemd-analyze checks that ExecStart's command exists
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    fleet.write_text(FLEET.replace("EXECUTABLE", str(executable)))
    for target in TARGETS_RENDERED:
        done = subprocess.run([sys.executable, "-m", "homestack", "render", target, "--config", str(fleet),
                               "-o", str(root / target)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    return root


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_rendered_fleet_files_validate(rendered: Path) -> None:
    for path in [rendered / "systemd" / "fleet.yaml", rendered / "compose" / "fleet.yaml"]:
        load_fleet(path)
    systemd = load_fleet(rendered / "systemd" / "fleet.yaml")
    assert not systemd.knowledge.supervise and str(systemd.data_dir) == "/var/lib/homestack"
    compose = load_fleet(rendered / "compose" / "fleet.yaml")
    assert compose.knowledge.qdrant_url == "http://qdrant:6333" and compose.knowledge.gateway_url == "http://gateway:8080"
    (configmap,) = _docs(rendered / "kubernetes" / "fleet.yaml")
    for name, text in configmap["data"].items():
        (rendered / name).write_text(text)
        load_fleet(rendered / name)
    front = load_fleet(rendered / "fleet.yaml")
    assert front.models["coder"].runner == "remote" and front.models["coder"].url == "http://homestack-coder:8080/v1"
    assert front.models["coder"].aliases == ["code"]
    assert set(load_fleet(rendered / "model-coder.yaml").models) == {"coder"}


def test_systemd_units_verify_without_warnings(rendered: Path) -> None:
    analyze = ensure_debian("systemd-analyze", "systemd")
    units = sorted((rendered / "systemd").glob("*.service"))
    assert [u.name for u in units] == ["homestack-knowledge.service", "homestack.service"]
    done = subprocess.run([analyze, "verify", "--man=no", *map(str, units)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
    gateway = (rendered / "systemd" / "homestack.service").read_text()
    # The plan: chat.small (600 MiB) and coder (1 GiB) fit together; +25 % margin, +256 MiB for homestack.
    assert f"MemoryMax={int((600 + 1024) * MIB * 1.25 / MIB) + 256}M" in gateway
    for line in ("Type=notify", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "ReadWritePaths=/var/lib/homestack", "User=homestack",
                 "EnvironmentFile=-/etc/homestack/homestack.env"):
        assert line in gateway.splitlines()
    assert (rendered / "systemd" / "homestack.env").stat().st_mode & 0o777 == 0o600
    # A negative control: the same check does see a mistake (systemd-analyze only warns, exit 0).
    broken = rendered / "broken.service"
    broken.write_text(gateway.replace("Restart=on-failure", "Restart=on-failure\nMemoryMaxx=1G"))
    done = subprocess.run([analyze, "verify", "--man=no", str(broken)], capture_output=True, text=True, timeout=60)
    assert "MemoryMaxx" in done.stdout + done.stderr


def test_gateway_tells_systemd_it_is_ready(gateway_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify_ready()  # not under systemd: nothing to do
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:  # what systemd listens on
        manager.bind(str(tmp_path / "notify"))
        manager.settimeout(30)
        gateway_factory("models: {}\n", env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert manager.recv(64) == b"READY=1"


def test_cli_lists_every_deploy_target() -> None:
    from homestack.cli import _DEPLOY_TARGETS
    from homestack.deploy.targets import TARGETS

    assert set(_DEPLOY_TARGETS) == set(TARGETS) == set(TARGETS_RENDERED)


def test_nginx_site_passes_nginx_t(rendered: Path, tmp_path: Path) -> None:
    nginx = ensure_debian("nginx", "nginx-light")
    cert, key = self_signed(tmp_path)
    site = (rendered / "nginx" / "homestack.conf").read_text()
    assert "client_max_body_size 1048576;" in site and "proxy_buffering off;" in site
    assert "allow 192.168.1.0/24;" in site and "limit_req zone=homestack_api" in site
    site = site.replace("/etc/ssl/homestack/fullchain.pem", str(cert)).replace("/etc/ssl/homestack/privkey.pem", str(key))
    (tmp_path / "site.conf").write_text(site)
    conf = nginx_test_conf(tmp_path, tmp_path / "site.conf")
    done = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "[warn]" not in done.stderr and "[emerg]" not in done.stderr, done.stderr


def test_kubernetes_manifests_validate_strict(rendered: Path) -> None:
    validate = _bin("kubernetes-validate")
    files = sorted((rendered / "kubernetes").glob("*.yaml"))
    done = subprocess.run([validate, "--strict", "--quiet", *map(str, files)], capture_output=True, text=True,
                          timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # kubernetes-validate has no schema for the ServiceMonitor CRD (it says so); everything else it checks.
    assert [line for line in output.splitlines() if "ERROR" in line or ("WARN" in line and "ServiceMonitor" not in line)] == []
    objects = {(d["kind"], d["metadata"]["name"]): d for f in files for d in _docs(f)}
    pinned = objects[("Deployment", "homestack-chat-small")]["spec"]
    term = pinned["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["box1"]}]
    assert pinned["replicas"] == 1 and ("HorizontalPodAutoscaler", "homestack-chat-small") not in objects
    hpa = objects[("HorizontalPodAutoscaler", "homestack-coder")]["spec"]
    assert hpa["metrics"][0]["external"]["metric"] == {"name": "homestack_queue_depth",
                                                       "selector": {"matchLabels": {"model": "coder"}}}
    coder = objects[("Deployment", "homestack-coder")]["spec"]["template"]["spec"]["containers"][0]
    assert coder["resources"]["limits"]["memory"] == f"{int(1024 * 1.25) + 256}Mi"
    assert coder["readinessProbe"]["httpGet"]["path"] == "/health"
    rules = yaml.safe_load(objects[("ConfigMap", "homestack-prometheus-adapter-rules")]["data"]["config.yaml"])
    assert rules["externalRules"][0]["name"]["as"] == "homestack_queue_depth"
    monitor = objects[("ServiceMonitor", "homestack")]["spec"]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    assert ("StatefulSet", "qdrant") in objects and ("PersistentVolumeClaim", "homestack-state") in objects
    job = objects[("CronJob", "qdrant-snapshots")]["spec"]
    assert job["schedule"] == "17 3 * * *"
    command = job["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["bash", "-c"] and "req POST /snapshots" in command[2]


def test_compose_file_matches_the_compose_spec(rendered: Path) -> None:
    compose = rendered / "compose" / "compose.yaml"
    done = subprocess.run([_bin("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        done = subprocess.run([docker, "compose", "-f", str(compose), "config", "-q"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    services = yaml.safe_load(compose.read_text())["services"]
    assert set(services) == {"gateway", "knowledge", "qdrant", "qdrant-snapshots", "prometheus", "grafana"}
    assert all("healthcheck" in s for name, s in services.items() if name != "qdrant-snapshots")  # a sleep loop
    loop = services["qdrant-snapshots"]["entrypoint"][2].replace("$$", "$")  # compose's escape, undone as compose does
    assert subprocess.run(["bash", "-n", "-c", loop]).returncode == 0 and "while sleep 86400" in loop
    for path in ("prometheus/prometheus.yml", "grafana/homestack-dashboard.json",
                 "grafana/provisioning/datasources/homestack.yaml"):
        assert (rendered / "compose" / path).is_file()


def test_render_deploy_needs_a_directory(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "homestack", "render", "nginx"], capture_output=True, text=True)
    assert done.returncode == 1 and "give a directory with -o DIR" in done.stderr and "Traceback" not in done.stderr


def test_deploy_settings_are_validated(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("deploy: {admin_networks: [not-a-net], rate_limit: fast}\n")
    done = subprocess.run([sys.executable, "-m", "homestack", "check", str(fleet)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "deploy.admin_networks: 'not-a-net' is not a network" in done.stderr and "deploy.rate_limit" in done.stderr
