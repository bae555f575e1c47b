"""Kubernetes manifests: one gateway Deployment in front, one Deployment per local model behind it (pinned
models on the nodes the fleet file names, on-demand ones scaled by an HPA on the front gateway's queue
depth through prometheus-adapter), the knowledge service on a PVC, and a ServiceMonitor.

The front gateway reaches each model's pod as a `remote` runner, so the scheduler's queue for a model
lives in one place whatever the replica count.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from .compose import QDRANT_PORT
from .qdrant_snapshots import cron_schedule, snapshot_script
from .context import GATEWAY_PORT, KNOWLEDGE_PORT, DeployContext, k8s_name, mebibytes

_STATE = "/var/lib/homestack"
_CONFIG = "/etc/homestack"
_PART_OF = {"app.kubernetes.io/part-of": "homestack"}
_REMOTE_KEEPS = ("aliases", "ttl", "max_concurrency", "startup_timeout")  # model keys a remote runner takes too


def _labels(component: str, **extra: str) -> dict[str, str]:
    return {**_PART_OF, "app.kubernetes.io/component": component, **extra}


def _meta(ctx: DeployContext, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": ctx.deploy.namespace, "labels": labels}


def _container(ctx: DeployContext, argv: list[str], port: int, memory_request: int, memory_limit: int,
               ) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3}
    return {
        "name": "homestack",
        "image": ctx.deploy.image,
        "args": argv,
        "env": [{"name": "HOMESTACK_HOME", "value": _STATE}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "ports": [{"name": "http", "containerPort": port}],
        "startupProbe": {**probe, "failureThreshold": 60},
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        "resources": {"requests": {"memory": f"{mebibytes(memory_request)}Mi"},
                      "limits": {"memory": f"{mebibytes(memory_limit)}Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": 10001, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "fleet", "mountPath": _CONFIG, "readOnly": True},
                         {"name": "state", "mountPath": _STATE}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def _deployment(ctx: DeployContext, name: str, labels: dict[str, str], container: dict[str, Any],
                state: dict[str, Any], replicas: int | None = 1, affinity: dict[str, Any] | None = None,
                ) -> dict[str, Any]:
    fleet_volume = ({"secret": {"secretName": "homestack-fleet"}} if ctx.fleet.auth_enabled
                    else {"configMap": {"name": "homestack-fleet"}})
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {"fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "fleet", **fleet_volume}, {"name": "state", **state}, {"name": "tmp", "emptyDir": {}}],
    }
    if affinity:
        pod["affinity"] = affinity
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                                                                              "spec": pod}}
    if replicas is not None:  # left out when an HPA owns the count
        spec["replicas"] = replicas
    if "persistentVolumeClaim" in state:  # one writer per volume: never two pods at once
        spec["strategy"] = {"type": "Recreate"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(ctx, name, labels), "spec": spec}


def _service(ctx: DeployContext, name: str, labels: dict[str, str], port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(ctx, name, labels),
            "spec": {"selector": labels, "ports": [{"name": "http", "port": port, "targetPort": "http"}]}}


def _node_affinity(node_labels: dict[str, str]) -> dict[str, Any] | None:
    if not node_labels:
        return None
    terms = [{"key": key, "operator": "In", "values": [value]} for key, value in node_labels.items()]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": terms}]}}}


def _hpa(ctx: DeployContext, model: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    d = ctx.deploy
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _meta(ctx, name, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": d.min_replicas, "maxReplicas": d.max_replicas,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": "homestack_queue_depth", "selector": {"matchLabels": {"model": model}}},
                "target": {"type": "AverageValue", "averageValue": f"{d.queue_target:g}"},
            }}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def _adapter_rules(ctx: DeployContext) -> dict[str, Any]:
    """prometheus-adapter's external metric: the front gateway's queue depth per model."""
    rules = {"externalRules": [{
        "seriesQuery": 'homestack_queue_depth{namespace!="",model!=""}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
        "name": {"matches": "^homestack_queue_depth$", "as": "homestack_queue_depth"},
        "metricsQuery": 'sum(<<.Series>>{<<.LabelMatchers>>,service="homestack-gateway"}) by (model)',
    }]}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(ctx, "homestack-prometheus-adapter-rules", _labels("autoscaling")),
            "data": {"config.yaml": yaml.safe_dump(rules, sort_keys=False)}}


def _service_monitor(ctx: DeployContext) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"port": "http", "path": "/metrics", "interval": "15s"}
    if ctx.fleet.auth_enabled:
        endpoint["authorization"] = {"type": "Bearer", "credentials": {"name": "homestack-metrics-key", "key": "key"}}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": _meta(ctx, "homestack", _labels("monitoring")),
            "spec": {"selector": {"matchLabels": {**_PART_OF, "homestack.dev/metrics": "true"}},
                     "endpoints": [endpoint]}}


def _fleets(ctx: DeployContext) -> dict[str, str]:
    """The front gateway's fleet (local models become remote runners on their pods) and each model pod's."""
    raw, fleet = ctx.raw, ctx.fleet
    keys = fleet.admin_keys or fleet.api_keys
    common = {"host": "0.0.0.0", "port": GATEWAY_PORT, "data_dir": _STATE}
    files = {}
    remote: dict[str, Any] = {}
    for name, model in raw.get("models", {}).items():
        if name not in ctx.local_models:
            remote[name] = model
            continue
        url = f"http://homestack-{k8s_name(name)}:{GATEWAY_PORT}/v1"
        remote[name] = {"runner": "remote", "url": url, "health_path": "/health",
                        **{k: v for k, v in model.items() if k in _REMOTE_KEEPS}}
        if keys:
            remote[name]["api_key"] = keys[0]
        files[f"model-{k8s_name(name)}.yaml"] = ctx.fleet_yaml(
            "kubernetes", **common, models={name: copy.deepcopy(model)}, groups=None, **{"knowledge.enabled": False})
    knowledge = {"knowledge.supervise": False, "knowledge.host": "homestack-knowledge",
                 "knowledge.port": KNOWLEDGE_PORT, "knowledge.gateway_url": f"http://homestack-gateway:{GATEWAY_PORT}"}
    if fleet.knowledge.qdrant_url:
        knowledge["knowledge.qdrant_url"] = f"http://qdrant:{QDRANT_PORT}"
    files["fleet.yaml"] = ctx.fleet_yaml("kubernetes", **common, models=remote, groups=None, **knowledge)
    return files


def _qdrant(ctx: DeployContext) -> list[dict[str, Any]]:
    labels = _labels("qdrant")
    storage = {"name": "storage", "mountPath": "/qdrant/storage"}
    return [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(ctx, "qdrant", labels), "spec": {
            "serviceName": "qdrant", "replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                "name": "qdrant", "image": ctx.deploy.qdrant_image,
                "ports": [{"name": "http", "containerPort": QDRANT_PORT}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}},
                "volumeMounts": [storage, {"name": "snapshots", "mountPath": "/qdrant/snapshots"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": volume}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}
                for volume in ("storage", "snapshots")],
        }},
        _service(ctx, "qdrant", labels, QDRANT_PORT),
        *([_snapshot_job(ctx)] if ctx.deploy.qdrant_snapshot_hours else []),
    ]


def _snapshot_job(ctx: DeployContext) -> dict[str, Any]:
    """A CronJob taking a Qdrant snapshot on schedule and deleting all but the newest few."""
    labels = _labels("qdrant-snapshots")
    container = {"name": "snapshot", "image": ctx.deploy.qdrant_image,
                 "command": ["bash", "-c", snapshot_script(ctx.deploy, "qdrant", QDRANT_PORT)]}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": _meta(ctx, "qdrant-snapshots", labels), "spec": {
        "schedule": cron_schedule(ctx.deploy.qdrant_snapshot_hours), "concurrencyPolicy": "Forbid",
        "jobTemplate": {"spec": {"backoffLimit": 2, "template": {"metadata": {"labels": labels}, "spec": {
            "restartPolicy": "OnFailure", "containers": [container]}}}},
    }}


def render(ctx: DeployContext) -> dict[str, str]:
    d, fleet = ctx.deploy, ctx.fleet
    open_access = [] if fleet.auth_enabled else ["--no-auth"]  # ClusterIP services: reachable in-cluster only
    fleet_data = _fleets(ctx)
    fleet_object = {"apiVersion": "v1", "kind": "Secret" if fleet.auth_enabled else "ConfigMap",
                    "metadata": _meta(ctx, "homestack-fleet", _labels("config")),
                    ("stringData" if fleet.auth_enabled else "data"): fleet_data}
    objects: dict[str, list[dict[str, Any]]] = {
        "namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": d.namespace,
                                                                                  "labels": dict(_PART_OF)}}],
        "fleet.yaml": [fleet_object],
    }
    serve = ["serve", "--host", "0.0.0.0", "--port", str(GATEWAY_PORT), *open_access]
    labels = _labels("gateway", **{"homestack.dev/metrics": "true"})
    argv = [*serve, "--config", f"{_CONFIG}/fleet.yaml", *([] if fleet.knowledge.enabled else ["--no-knowledge"])]
    gateway = _container(ctx, argv, GATEWAY_PORT, d.process_memory, ctx.with_margin(0))
    objects["gateway.yaml"] = [_deployment(ctx, "homestack-gateway", labels, gateway, {"emptyDir": {}}),
                               _service(ctx, "homestack-gateway", labels, GATEWAY_PORT)]
    for name in ctx.local_models:
        k8s = f"homestack-{k8s_name(name)}"
        labels = _labels("model", **{"homestack.dev/model": k8s_name(name), "homestack.dev/metrics": "true"})
        container = _container(ctx, [*serve, "--no-knowledge", "--config", f"{_CONFIG}/model-{k8s_name(name)}.yaml"],
                               GATEWAY_PORT, ctx.model_memory(name) + d.process_memory,
                               ctx.with_margin(ctx.model_memory(name)))
        pinned = fleet.models[name].pinned
        docs = [
            _deployment(ctx, k8s, labels, container, {"emptyDir": {}}, replicas=1 if pinned else None,
                        affinity=_node_affinity(d.node_labels.get(name, {})) if pinned else None),
            _service(ctx, k8s, labels, GATEWAY_PORT),
        ]
        if not pinned:
            docs.append(_hpa(ctx, name, k8s, labels))
        objects[f"model-{k8s_name(name)}.yaml"] = docs
    if fleet.knowledge.enabled:
        labels = _labels("knowledge")
        argv = ["knowledge", "serve", "--host", "0.0.0.0", "--port", str(KNOWLEDGE_PORT), "--no-auth",
                "--config", f"{_CONFIG}/fleet.yaml"]  # only reachable in-cluster; the gateway checks keys
        container = _container(ctx, argv, KNOWLEDGE_PORT, d.knowledge_memory, d.knowledge_memory)
        objects["knowledge.yaml"] = [
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(ctx, "homestack-state", labels),
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}},
            _deployment(ctx, "homestack-knowledge", labels, container,
                        {"persistentVolumeClaim": {"claimName": "homestack-state"}}),
            _service(ctx, "homestack-knowledge", labels, KNOWLEDGE_PORT),
        ]
        if fleet.knowledge.qdrant_url:
            objects["qdrant.yaml"] = _qdrant(ctx)
    objects["monitoring.yaml"] = [_service_monitor(ctx), _adapter_rules(ctx)]
    return {path: ctx.header("kubernetes") + yaml.safe_dump_all(docs, sort_keys=False)
            for path, docs in objects.items()}
