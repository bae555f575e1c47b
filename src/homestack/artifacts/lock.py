"""`homestack.lock`: what a fleet runs, pinned (model files with sha256, GGUF facts, runner versions).

``build`` describes the fleet as it is now (hashes cached by file identity, so an unchanged
fleet is described from stat calls); ``drifts`` names every difference from a lock.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from importlib.resources import files
from pathlib import Path

from ..config import DEFAULT_FLEET, load_fleet
from ..errors import ConfigError
from .hashes import HashCache

FORMAT = "homestack-lock/1"
LOCK_NAME = "homestack.lock"


def lock_file(config: str | None) -> Path:
    """homestack.lock beside the fleet file; for the default fleet, in its data dir."""
    if config:
        return Path(config).expanduser().resolve().parent / LOCK_NAME
    return load_fleet(None).data_dir / LOCK_NAME


def _fleet_text(config: str | None) -> bytes:
    if config is None:
        return files("homestack.config").joinpath("default.yaml").read_bytes()
    return Path(config).read_bytes()


def _model_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _gguf_facts(path: Path, spec, cache_dir: Path) -> dict:
    """Architecture, quantization (the tensor type holding most bytes) and context of a GGUF file."""
    from ..planner.gguf import read_gguf_info

    try:
        info = read_gguf_info(path, cache_dir)
    except (OSError, ValueError, KeyError):
        return {}
    by_type: Counter[str] = Counter()
    for tensor in info.tensors:
        by_type[tensor.ggml_type] += tensor.n_bytes
    return {"architecture": info.architecture, "quantization": by_type.most_common(1)[0][0] if by_type else None,
            "context": getattr(spec, "ctx_size", None) or info.context_length, "context_trained": info.context_length}


def file_entry(path: Path, cache: HashCache) -> dict:
    return {"path": str(path), "size": path.stat().st_size, "sha256": cache.sha256(path)}


def build(config: str | None, pulled: dict | None = None) -> dict:
    """The lock for the fleet at ``config`` (None: the default fleet) as it is now."""
    from ..runners.launch import plan_fleet

    fleet = load_fleet(config)
    cache = HashCache(fleet.data_dir / "cache" / "hashes.json")
    models = {}
    for name, plan in plan_fleet(fleet, config or DEFAULT_FLEET).items():
        spec = fleet.models[name]
        entry: dict = {"runner": plan.kind.name, "runner_version": plan.version}
        if plan.binary is not None:
            entry["runner_binary"] = str(plan.binary)
        path = plan.model_path(fleet.data_dir)
        if path is not None:
            entry["files"] = [file_entry(p, cache) for p in _model_files(path)]
            if path.is_file():
                entry.update(_gguf_facts(path, spec, fleet.data_dir / "cache"))
        if plan.draft_path is not None:  # a speculative draft model is part of what runs
            entry["draft_files"] = [file_entry(p, cache) for p in _model_files(plan.draft_path)]
        models[name] = entry
    current = {
        "format": FORMAT,
        "fleet": {"file": str(Path(config).resolve()) if config else DEFAULT_FLEET,
                  "sha256": hashlib.sha256(_fleet_text(config)).hexdigest()},
        "models": models,
        "pulled": {name: {**p, **_recheck(p, cache)} for name, p in (pulled or {}).items()},
    }
    cache.save()
    return current


def _recheck(entry: dict, cache: HashCache) -> dict:
    path = Path(entry["path"])
    return file_entry(path, cache) if path.is_file() else {"size": None, "sha256": None}


def read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no lock file; run `homestack lock` first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the lock file: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a homestack lock file ({FORMAT}); run `homestack lock` to rewrite it")
    return data


def write(path: Path, lock: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(lock, indent=2) + "\n")
    os.replace(partial, path)


def _file_drifts(what: str, locked: list[dict], now: list[dict]) -> list[str]:
    now_by_path = {f["path"]: f for f in now}
    out = []
    for f in locked:
        current = now_by_path.pop(f["path"], None)
        if current is None or current.get("sha256") is None:
            out.append(f"{what}: file {f['path']} is missing")
        elif current["sha256"] != f["sha256"]:
            out.append(f"{what}: file {f['path']} changed (sha256 {f['sha256'][:12]}… is now {current['sha256'][:12]}…)")
    out += [f"{what}: new file {p} is not in the lock" for p in now_by_path]
    return out


_FIELDS = (("runner", "runner"), ("runner_version", "runner version"), ("runner_binary", "runner binary"),
           ("architecture", "architecture"), ("quantization", "quantization"), ("context", "context"))


def drifts(locked: dict, now: dict) -> list[str]:
    """Each difference between a lock and the fleet now, one line each, naming what changed."""
    out = []
    if locked["fleet"]["sha256"] != now["fleet"]["sha256"]:
        out.append(f"fleet file {now['fleet']['file']} changed since it was locked")
    for name, entry in now["models"].items():
        old = locked["models"].get(name)
        if old is None:
            out.append(f"model {name}: unlocked (not in the lock; run `homestack lock`)")
            continue
        for key, what in _FIELDS:
            if old.get(key) != entry.get(key):
                out.append(f"model {name}: {what} changed ({old.get(key)} -> {entry.get(key)})")
        out += _file_drifts(f"model {name}", old.get("files", []), entry.get("files", []))
        out += _file_drifts(f"model {name} draft", old.get("draft_files", []), entry.get("draft_files", []))
    out += [f"model {name}: locked but no longer in the fleet" for name in locked["models"].keys() - now["models"].keys()]
    for name, entry in locked.get("pulled", {}).items():
        out += _file_drifts(f"pulled {name}", [entry], [now["pulled"].get(name, {"path": entry["path"]})])
    return out


def verify(config: str | None) -> tuple[Path, list[str]]:
    """The lock file's path and the drifts of the fleet from it."""
    path = lock_file(config)
    locked = read(path)
    return path, drifts(locked, build(config, locked.get("pulled")))
