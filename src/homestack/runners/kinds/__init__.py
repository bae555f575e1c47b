"""Runner kinds: one module each, and the registry the schema, launcher and planner ask.

Adding a kind: a module here with its config model and ``RunnerKind``
subclass, one row in ``KINDS``, and its tests. Nothing else switches on kinds.
"""

from __future__ import annotations

from .base import KindConfig, LaunchPlan, RunnerKind
from .command import Command
from .embeddings import Embeddings
from .llama_cpp import LlamaCpp
from .remote import Remote
from .vllm import Vllm

# runner: value -> kind, in the order the schema and error messages list them
KINDS: dict[str, RunnerKind] = {kind.name: kind for kind in (LlamaCpp(), Command(), Embeddings(), Remote(), Vllm())}


def kind_for(spec: KindConfig) -> RunnerKind:
    """The kind of a validated model config (its ``runner:`` key)."""
    return KINDS[spec.runner]


__all__ = ["KINDS", "KindConfig", "LaunchPlan", "RunnerKind", "kind_for"]
