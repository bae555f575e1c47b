"""A request body checked against the surface's JSON schema for it, before any runner sees it.

A small subset of JSON Schema, enough for the fields a runner mishandles (llama-server
answers 500 to a message whose role is not a string, and wraps a max_tokens past
2^31): ``required``, ``type``, number bounds, string and array lengths, ``items``
and nested ``properties``. Fields the schema does not list pass through to the
runner. The schema is the one ``/openapi.json`` publishes, so they cannot disagree.
"""

from __future__ import annotations

from typing import Any

from ...errors import BadRequest

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,), "null": (type(None),),
}


def check_fields(payload: dict[str, Any], schema: dict[str, Any]) -> None:
    """400 naming the first field that is missing or breaks ``schema``; the value itself is never echoed."""
    found = _problem(payload, schema, "")
    if found is not None:
        where, problem = found
        raise BadRequest(f"field {where!r} {problem}" if problem != "missing" else f"missing required field {where!r}",
                         param=where)


def _problem(value: Any, rule: dict[str, Any], where: str) -> tuple[str, str] | None:
    kinds = rule.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, kind) for kind in kinds):
            return where, f"must be {' or '.join(kinds)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in rule and value < rule["minimum"]:
            return where, f"must be at least {rule['minimum']}"
        if "maximum" in rule and value > rule["maximum"]:
            return where, f"must be at most {rule['maximum']}"
    if isinstance(value, str):
        return _size(len(value), rule.get("minLength"), rule.get("maxLength"), "characters", where)
    if isinstance(value, list):
        if found := _size(len(value), rule.get("minItems"), rule.get("maxItems"), "items", where):
            return found
        items = rule.get("items")
        for i, item in enumerate(value if items else ()):
            if found := _problem(item, items, f"{where}[{i}]"):
                return found
    if isinstance(value, dict):
        prefix = f"{where}." if where else ""
        for name in rule.get("required", ()):
            if value.get(name) is None:
                return prefix + name, "missing"
        for name, field in rule.get("properties", {}).items():
            if value.get(name) is not None and (found := _problem(value[name], field, prefix + name)):
                return found
    return None


def _size(size: int, lowest: int | None, highest: int | None, unit: str, where: str) -> tuple[str, str] | None:
    if lowest is not None and size < lowest:
        return where, f"must have at least {lowest} {unit}"
    if highest is not None and size > highest:
        return where, f"has {size} {unit}; the limit is {highest}"
    return None


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[kind])
