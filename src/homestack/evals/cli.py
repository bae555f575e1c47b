"""`homestack eval`: score models on suites, side by side, with an optional determinism check."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

FORMAT = "homestack-eval/1"


def _table(report: dict, suites: list[str]):
    from rich.table import Table

    models = list(report)
    table = Table(title="eval")
    table.add_column("suite")
    for model in models:
        table.add_column(model, justify="right")
    for suite in suites:
        cells = []
        for model in models:
            r = report[model][suite]
            det = "" if r["determinism"] is None else f", det {r['determinism']:.0%}"
            cells.append(f"{r['passed']}/{r['items']} ({r['score']:.0%}{det}), p50 {r['latency']['p50']:.2f} s")
        table.add_row(suite, *cells)
    return table


def _eval(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..errors import HomestackError
    from .run import Options, run
    from .suite import load

    models = [m for value in args.model for m in value.split(",") if m]
    if not models:
        raise HomestackError("eval needs --model NAME (repeat it, or comma-separate, for a side-by-side table)")
    suites = {name: [i.model_copy(update={"max_tokens": min(i.max_tokens, args.max_tokens or i.max_tokens)})
                     for i in items[: args.limit]] for name, items in map(load, args.suite)}
    options = Options(url=args.url, api_key=args.api_key or os.environ.get("HOMESTACK_API_KEY"),
                      concurrency=args.concurrency, temperature=args.temperature, seed=args.seed,
                      repeats=args.determinism)
    console = Console(stderr=True)
    total = len(models) * sum(len(items) for items in suites.values())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("eval", total=total)
        report = asyncio.run(run(suites, models, options, lambda: bar.advance(task)))
    out = Console(width=None if Console().is_terminal else 160)
    out.print(_table(report, list(suites)))
    if args.output:
        doc = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "settings": {**asdict(options), "api_key": None, "models": models, "suites": list(suites)},
               "models": report}
        Path(args.output).write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        print(f"wrote {args.output}")


def register(command) -> None:
    """Add `eval` to the `homestack` parser."""
    p = command("eval", _eval, "Score models on evaluation suites (JSONL), side by side; --determinism N.")
    p.add_argument("--url", default="http://127.0.0.1:8080/v1", help="API base ending in /v1 (default: the local gateway)")
    p.add_argument("--model", "-m", action="append", default=[], help="model (repeatable, or comma-separated)")
    p.add_argument("--suite", "-s", action="append", required=True, metavar="SUITE",
                   help="a JSONL file, or a shipped suite: arithmetic, instructions (repeatable)")
    p.add_argument("--api-key", help="key (default $HOMESTACK_API_KEY)")
    p.add_argument("--concurrency", type=int, default=4, help="requests at once (default 4)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    p.add_argument("--seed", type=int, default=1234, help="sampling seed (default 1234)")
    p.add_argument("--determinism", type=int, default=1, metavar="N",
                   help="ask each item N times; report the share of items with identical answers")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N items of each suite (a quick check)")
    p.add_argument("--max-tokens", type=int, metavar="N", help="cap every item's max_tokens at N")
    p.add_argument("-o", "--output", metavar="FILE", help="write the results JSON here")
