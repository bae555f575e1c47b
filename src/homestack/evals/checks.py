"""Checks: does an answer pass? One function per check type, looked up by the check's class."""

from __future__ import annotations

import json
import re
from typing import Callable

from .suite import Contains, Exact, Json, JsonSchema, Numeric, Regex, ToolCall

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _fold(text: str, ignore_case: bool) -> str:
    return text.casefold() if ignore_case else text


def _parse_json(text: str):
    text = text.strip()
    fenced = _FENCE.match(text)
    return json.loads(fenced.group(1) if fenced else text)


def _contains_all(actual, expected) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _contains_all(actual[k], v) for k, v in expected.items())
    return actual == expected


def _exact(check: Exact, text: str, calls: list) -> tuple[bool, str]:
    return _fold(text.strip(), check.ignore_case) == _fold(check.value, check.ignore_case), ""


def _contains(check: Contains, text: str, calls: list) -> tuple[bool, str]:
    return _fold(check.value, check.ignore_case) in _fold(text, check.ignore_case), ""


def _regex(check: Regex, text: str, calls: list) -> tuple[bool, str]:
    return re.search(check.value, text) is not None, ""


def _json(check: Json, text: str, calls: list) -> tuple[bool, str]:
    try:
        parsed = _parse_json(text)
    except ValueError as exc:
        return False, f"not JSON: {exc}"
    return check.value is None or _contains_all(parsed, check.value), ""


def _json_schema(check: JsonSchema, text: str, calls: list) -> tuple[bool, str]:
    import jsonschema

    try:
        jsonschema.validate(_parse_json(text), check.schema_)
    except ValueError as exc:
        return False, f"not JSON: {exc}"
    except jsonschema.ValidationError as exc:
        return False, f"schema: {exc.message}"
    return True, ""


def _numeric(check: Numeric, text: str, calls: list) -> tuple[bool, str]:
    """The answer's last number (thousands separators allowed) within the tolerance."""
    numbers = _NUMBER.findall(text)
    if not numbers:
        return False, "no number in the answer"
    value = float(numbers[-1].replace(",", ""))
    return abs(value - check.value) <= check.tolerance, f"read {value:g}"


def _tool_call(check: ToolCall, text: str, calls: list) -> tuple[bool, str]:
    for call in calls:
        function = call.get("function") or {}
        if function.get("name") != check.name:
            continue
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            return False, "tool call arguments are not JSON"
        return _contains_all(arguments, check.arguments), f"arguments {arguments}"
    return False, f"no call to {check.name}" + (f" (called {[c.get('function', {}).get('name') for c in calls]})"
                                              if calls else "")


CHECKS: dict[type, Callable[..., tuple[bool, str]]] = {
    Exact: _exact, Contains: _contains, Regex: _regex, Json: _json, JsonSchema: _json_schema,
    Numeric: _numeric, ToolCall: _tool_call,
}


def passes(check, text: str, tool_calls: list) -> tuple[bool, str]:
    """Whether the answer (text and tool calls) passes, and a short note on why not."""
    return CHECKS[type(check)](check, text, tool_calls)
