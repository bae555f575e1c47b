"""Evaluation suites: JSONL files, one item a line, validated into typed items.

An item is ``{"messages": [...]}`` (chat) or ``{"prompt": "..."}`` (completions), a ``check``,
and optionally ``id``, ``max_tokens``, ``tools`` and ``tool_choice``. The shipped suites are
found by name (``--suite arithmetic``); anything else is a path.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exact(_Check):
    type: Literal["exact"]
    value: str
    ignore_case: bool = False


class Contains(_Check):
    type: Literal["contains"]
    value: str
    ignore_case: bool = False


class Regex(_Check):
    type: Literal["regex"]
    value: str = Field(description="a Python regular expression searched in the answer")


class Json(_Check):
    type: Literal["json"]
    value: Any = Field(None, description="when given, the parsed answer must contain these keys and values")


class JsonSchema(_Check):
    type: Literal["json_schema"]
    schema_: dict = Field(alias="schema")


class Numeric(_Check):
    type: Literal["numeric"]
    value: float
    tolerance: float = Field(1e-6, ge=0, description="absolute tolerance")


class ToolCall(_Check):
    type: Literal["tool_call"]
    name: str
    arguments: dict = Field(default_factory=dict, description="these arguments, with these values (others allowed)")


Check = Annotated[Union[Exact, Contains, Regex, Json, JsonSchema, Numeric, ToolCall], Field(discriminator="type")]


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str | None = None
    messages: list[dict] | None = None
    prompt: str | None = None
    check: Check
    max_tokens: int = Field(128, ge=1)
    tools: list[dict] | None = None
    tool_choice: Any = None

    @model_validator(mode="after")
    def _one_input(self) -> "Item":
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give either 'messages' (chat) or 'prompt' (completions)")
        return self


def shipped() -> dict[str, Path]:
    folder = files(__package__).joinpath("suites")
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".jsonl")}


def resolve(ref: str) -> Path:
    path = Path(ref).expanduser()
    if path.exists() or ref.endswith(".jsonl"):
        return path
    known = shipped()
    if ref not in known:
        raise ConfigError(f"no suite {ref!r}: give a JSONL file or a shipped suite ({', '.join(sorted(known))})")
    return known[ref]


def load(ref: str) -> tuple[str, list[Item]]:
    """The suite's name and its items; every bad line named with file, line and key."""
    path = resolve(ref)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read suite: {exc.strerror}") from None
    items, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = Item.model_validate(json.loads(line))
            items.append(item if item.id else item.model_copy(update={"id": f"{path.stem}-{number}"}))
        except ValueError as exc:
            errors = exc.errors() if isinstance(exc, ValidationError) else [{"loc": (), "msg": f"not JSON: {exc}"}]
            problems += [f"{path}:{number}: {'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in errors]
    if problems:
        raise ConfigError("\n".join(problems))
    if not items:
        raise ConfigError(f"{path}: the suite has no items")
    return path.stem, items
