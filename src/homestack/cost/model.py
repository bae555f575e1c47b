"""The cost model: pure functions from inputs to monthly costs, cost per million tokens, break-even."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError

DAYS_PER_MONTH = 365.25 / 12


class CloudPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0, description="price per million input tokens")
    output: float = Field(ge=0, description="price per million output tokens")


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: dict[str, CloudPrice]


def load_prices(path: Path | None) -> PriceTable:
    from importlib.resources import files

    label = str(path) if path else "the shipped price table"
    try:
        text = path.read_text() if path else files(__package__).joinpath("prices.yaml").read_text()
        return PriceTable.model_validate(yaml.safe_load(text))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{label}: cannot read prices: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{label}: {'.'.join(map(str, err['loc']))}: {err['msg']} "
                          "(each model needs input: and output: prices per million tokens)") from None


@dataclass(frozen=True)
class SelfHosted:
    capex: float  # hardware cost
    lifetime_months: float = 36.0
    monthly: float | None = None  # the running cost per month, when known; else from the parts below
    throughput: float | None = None  # output tokens/s, measured
    watts: float | None = None  # power draw while generating
    idle_watts: float = 0.0  # power draw the rest of the time
    price_kwh: float = 0.30
    upkeep_hours: float = 0.0  # per month
    hourly_rate: float = 0.0


@dataclass(frozen=True)
class Usage:
    tokens_per_day: float = 2_000_000
    output_share: float = 0.25  # of the daily tokens, the generated ones


@dataclass
class Breakdown:
    monthly: float
    parts: dict[str, float] = field(default_factory=dict)
    busy_hours_per_day: float | None = None


def self_hosted_monthly(hw: SelfHosted, usage: Usage) -> Breakdown:
    """Running cost per month: the given figure, or electricity for the busy hours plus upkeep."""
    if hw.monthly is not None:
        return Breakdown(hw.monthly, {"given": hw.monthly})
    if not hw.throughput or hw.watts is None:
        raise ConfigError("cost needs --monthly, or a throughput (--bench FILE or --throughput) and power "
                          "(measured by bench, or --watts)")
    busy = min(24.0, usage.tokens_per_day * usage.output_share / hw.throughput / 3600)
    kwh_per_day = (hw.watts * busy + hw.idle_watts * (24 - busy)) / 1000
    parts = {"electricity": kwh_per_day * DAYS_PER_MONTH * hw.price_kwh, "upkeep": hw.upkeep_hours * hw.hourly_rate}
    return Breakdown(sum(parts.values()), parts, busy)


def cloud_monthly(price: CloudPrice, usage: Usage) -> float:
    tokens = usage.tokens_per_day * DAYS_PER_MONTH / 1e6
    return tokens * ((1 - usage.output_share) * price.input + usage.output_share * price.output)


def cost_per_million(monthly: float, hw: SelfHosted, usage: Usage) -> float:
    """Self-hosted cost per million tokens, hardware written off over its lifetime."""
    return (monthly + hw.capex / hw.lifetime_months) / (usage.tokens_per_day * DAYS_PER_MONTH / 1e6)


def break_even_months(capex: float, self_monthly: float, cloud: float) -> float:
    """Months until the hardware has paid for itself against ``cloud`` per month (inf: never)."""
    saving = cloud - self_monthly
    return capex / saving if saving > 0 else math.inf
