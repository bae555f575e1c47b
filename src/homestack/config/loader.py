"""Load a fleet file (or the embedded default) into a validated FleetConfig.

Every error names the file, the dotted key and what would be valid.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ..errors import KeyedError
from .routes import RouteSpec
from .schema import MODEL_KINDS, RUNNER_KINDS, FleetConfig, Group

DEFAULT_FLEET = "<embedded default fleet>"


def load_fleet(path: str | Path | None = None, **overrides: Any) -> FleetConfig:
    """Read and validate a fleet file; ``None`` means the embedded default fleet.

    ``overrides`` (host, port, ...) replace top-level keys, as CLI flags do.
    """
    if path is None:
        label, text = DEFAULT_FLEET, files(__package__).joinpath("default.yaml").read_text()
    else:
        label = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read fleet file: {exc.strerror}") from None
    data = _parse_yaml(label, text)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(label, err) for err in exc.errors())) from None


def _parse_yaml(label: str, text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{label}:{where}: not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: the fleet file must be a mapping with a 'models' key")
    return data


def _describe(label: str, err: dict[str, Any]) -> str:
    loc = [str(part) for part in err["loc"]]
    # pydantic puts the union's tag into the location (models.x.remote.url): drop it.
    if len(loc) > 2 and loc[0] == "models" and loc[2] in RUNNER_KINDS:
        del loc[2]
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, KeyedError):  # a validator that names the key below its field
        loc.append(cause.key)
    key = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        message = f"unknown key; valid keys here: {', '.join(_valid_keys(err['loc']))}"
    elif kind == "union_tag_not_found":
        message = f"missing key 'runner'; one of: {', '.join(RUNNER_KINDS)}"
    elif kind == "union_tag_invalid":
        message = f"unknown runner {err['input'].get('runner')!r}; one of: {', '.join(RUNNER_KINDS)}"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "value_error":  # our own validators name the value already
        message = err["msg"].removeprefix("Value error, ")
    else:
        message = err["msg"]
        if "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got {err['input']!r})"
    return f"{label}: {key}: {message}"


def _valid_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that holds the unknown key at ``loc``."""
    model: type[BaseModel] = FleetConfig
    parts = list(loc[:-1])
    if len(parts) >= 3 and parts[0] == "models":
        model, parts = MODEL_KINDS[parts[2]], parts[3:]
    elif len(parts) >= 2 and parts[0] == "groups":
        model, parts = Group, parts[2:]
    elif len(parts) >= 2 and parts[0] == "routes":
        model, parts = RouteSpec, parts[2:]
    elif parts and parts[0] in _SECTIONS:
        model, parts = _SECTIONS[parts[0]], parts[1:]
    for part in parts:  # a settings model inside (a model's speculative:)
        field = model.model_fields.get(str(part))
        inner = _settings_model(field.annotation) if field else None
        if inner is None:
            return []
        model = inner
    return sorted(model.model_fields)


def _settings_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel in ``annotation`` (``X`` or ``X | None``), or None."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


# Top-level keys whose value is one settings model (timeouts, memory, scheduling).
_SECTIONS = {
    name: field.annotation
    for name, field in FleetConfig.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}
