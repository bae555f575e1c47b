"""A route's `promotion:` settings: the smoke test, the eval gate, canary steps and rollback thresholds.

``homestack promote ROUTE --to MODEL`` reads them (its options override the canary
steps and durations); every setting has a default, so a route without this
section can be promoted with no smoke test and no eval gate.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..evals.suite import Item


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvalGate(_Strict):
    suite: str = Field(description="An eval suite (a JSONL file, or a shipped one: arithmetic, instructions).")
    threshold: float = Field(0.5, ge=0, le=1, description="Score the candidate must reach (share of items passed).")
    tolerance: float = Field(
        0.1, ge=0, le=1, description="How far the candidate's score may fall below the current target's, both "
        "measured in the same promotion.",
    )
    limit: int | None = Field(None, ge=1, description="Only the first N items (a quicker gate).")
    max_tokens: int | None = Field(None, ge=1, description="Cap every item's max_tokens at N (a quicker gate).")


class PromotionSpec(_Strict):
    smoke: list[Item] = Field(
        default_factory=list, description="Fixed requests sent to the candidate before any traffic moves, each "
        "with a check (regex, json, json_schema, tool_call, ...; the eval suite item format).",
    )
    eval: EvalGate | None = Field(None, description="An eval suite the candidate must pass against the current target.")
    canary: list[float] = Field(
        default_factory=lambda: [10.0, 50.0], description="The candidate's share of the route's traffic, in "
        "percent, step by step (then 100 for the watch window).",
    )
    step_seconds: float = Field(60, gt=0, description="Seconds each canary step lasts.")
    watch_seconds: float = Field(
        300, ge=0, description="Seconds the candidate serves all traffic, watched, while the old target stays "
        "loaded for an instant rollback.",
    )
    max_error_rate: float = Field(
        0.05, ge=0, le=1, description="Roll back when the candidate's error rate exceeds the current target's by more.",
    )
    max_ttft_ratio: float = Field(
        2.0, ge=1, description="Roll back when the candidate's p95 time to first token exceeds the current target's "
        "this many times (plus ttft_slack).",
    )
    ttft_slack: float = Field(0.25, ge=0, description="Seconds added to the TTFT limit, so tiny times do not flap.")
    min_requests: int = Field(5, ge=1, description="Candidate requests a step needs before TTFT is judged.")

    @field_validator("canary")
    @classmethod
    def _rising(cls, canary: list[float]) -> list[float]:
        if any(not 0 < share < 100 for share in canary) or canary != sorted(set(canary)):
            raise ValueError("canary shares are percentages between 0 and 100, rising, e.g. [10, 50]")
        return canary
