"""`homestack cost`: self-hosted against cloud APIs, per month and per million tokens, and break-even."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import HomestackError


def _from_bench(path: Path) -> tuple[float | None, float | None]:
    """The best output tokens/s in a bench results file, and the power measured during that run."""
    from ..bench.results import load

    runs = [r for r in load(path)["runs"] if r["summary"].get("output_tokens_per_s")]
    if not runs:
        raise HomestackError(f"{path}: no run with a throughput")
    best = max(runs, key=lambda r: r["summary"]["output_tokens_per_s"])
    return best["summary"]["output_tokens_per_s"], best["summary"].get("power_w")


def _cost(args: argparse.Namespace) -> None:
    from .model import (
        CloudPrice, SelfHosted, Usage, break_even_months, cloud_monthly, cost_per_million, load_prices,
        self_hosted_monthly,
    )

    throughput, watts = _from_bench(Path(args.bench)) if args.bench else (None, None)
    hw = SelfHosted(capex=args.capex, lifetime_months=args.lifetime_months, monthly=args.monthly,
                    throughput=args.throughput or throughput, watts=args.watts if args.watts is not None else watts,
                    idle_watts=args.idle_watts, price_kwh=args.price_kwh, upkeep_hours=args.upkeep_hours,
                    hourly_rate=args.hourly_rate)
    usage = Usage(args.tokens_per_day, args.output_share)
    own = self_hosted_monthly(hw, usage)
    clouds = {"cloud (given)": args.cloud_monthly} if args.cloud_monthly is not None else {}
    prices = load_prices(Path(args.prices) if args.prices else None).models
    for name in args.cloud or ([] if clouds else sorted(prices)):
        if name not in prices:
            raise HomestackError(f"no price for {name!r}; known: {', '.join(sorted(prices))} (or give --prices FILE)")
        clouds[name] = cloud_monthly(prices[name], usage)
    rows = [{"option": name, "monthly": monthly, "break_even_months": break_even_months(hw.capex, own.monthly, monthly)}
            for name, monthly in clouds.items()]
    per_million = cost_per_million(own.monthly, hw, usage)
    if args.json:
        print(json.dumps({"self_hosted": {"monthly": own.monthly, "parts": own.parts, "per_million_tokens": per_million,
                                          "busy_hours_per_day": own.busy_hours_per_day},
                          "clouds": [{**r, "break_even_months": None if math.isinf(r["break_even_months"])
                                      else r["break_even_months"]} for r in rows]}, indent=2))
        return
    cur = args.currency
    parts = ", ".join(f"{k} {v:,.2f}" for k, v in own.parts.items())
    print(f"At {args.tokens_per_day:,.0f} tokens/day: self-hosted {cur} {own.monthly:,.2f}/month ({parts}), "
          f"{cur} {per_million:,.2f} per million tokens with hardware {cur} {hw.capex:,.0f} over "
          f"{hw.lifetime_months:g} months" + (f"; busy {own.busy_hours_per_day:.1f} h/day" if own.busy_hours_per_day
                                               is not None else ""))
    for r in rows:
        months = r["break_even_months"]
        when = "never (cheaper than self-hosting)" if math.isinf(months) else f"break-even after {months:.1f} months"
        print(f"  {r['option']:<18} {cur} {r['monthly']:>10,.2f}/month  {when}")


def register(command) -> None:
    """Add `cost` to the `homestack` parser."""
    p = command("cost", _cost, "Cost per million tokens and break-even month against cloud APIs.")
    p.add_argument("--capex", type=float, required=True, help="hardware cost")
    p.add_argument("--lifetime-months", type=float, default=36, help="months to write the hardware off (default 36)")
    p.add_argument("--monthly", type=float, help="self-hosted running cost per month (else from power and upkeep)")
    p.add_argument("--cloud-monthly", type=float, help="what the cloud costs per month at this volume")
    p.add_argument("--cloud", action="append", metavar="MODEL", help="a cloud model from the price table (repeatable)")
    p.add_argument("--prices", metavar="FILE", help="price table YAML (default: the shipped one)")
    p.add_argument("--tokens-per-day", type=float, default=2_000_000, help="daily token volume (default 2M)")
    p.add_argument("--output-share", type=float, default=0.25, help="share of the tokens that are output (default 0.25)")
    p.add_argument("--bench", metavar="FILE", help="a `homestack bench` results file: throughput and measured power")
    p.add_argument("--throughput", type=float, help="output tokens/s (instead of --bench)")
    p.add_argument("--watts", type=float, help="power draw while generating (default: measured by bench)")
    p.add_argument("--idle-watts", type=float, default=0.0, help="power draw when idle (default 0)")
    p.add_argument("--price-kwh", type=float, default=0.30, help="electricity price per kWh (default 0.30)")
    p.add_argument("--upkeep-hours", type=float, default=0.0, help="hours of upkeep per month")
    p.add_argument("--hourly-rate", type=float, default=0.0, help="cost of an hour of upkeep")
    p.add_argument("--currency", default="EUR", help="label for the figures (default EUR)")
    p.add_argument("--json", action="store_true", help="print JSON")
