"""`homestack bench` and `homestack bench compare`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from ..errors import HomestackError
from .workloads import SHIPPED_WORKLOADS, shipped_workload


def _numbers(kind):
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if not values or min(values) <= 0:
            raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
        return values
    return parse


def _lock_sha256(config: str | None) -> str | None:
    import hashlib

    from ..artifacts.lock import lock_file

    try:
        path = lock_file(config)
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    except HomestackError:
        return None


def _bench(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import load, results
    from .stats import parse_slo

    if not args.model:
        raise HomestackError("bench needs --model NAME (the model to load-test)")
    if args.workload and args.dataset:
        raise HomestackError("bench takes --workload NAME or --dataset FILE, not both")
    settings = load.Settings(
        url=args.url, model=args.model, api=args.api, concurrency=args.concurrency, rates=args.rate or [],
        requests=args.requests, input_tokens=args.input_tokens, output_tokens=args.output_tokens,
        dataset=args.dataset or (str(shipped_workload(args.workload)) if args.workload else None),
        slo=parse_slo(args.slo), cold=args.cold, warmup=args.warmup, seed=args.seed,
        ignore_eos=not args.no_ignore_eos, timeout=args.timeout)
    api_key = args.api_key or os.environ.get("HOMESTACK_API_KEY")
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"bench {args.model}", total=load.total_requests(settings))
        outcome = asyncio.run(load.run(settings, api_key, lambda: bar.advance(task)))
    doc = results.document(settings.to_dict(), outcome, results.fleet(args.url, api_key), _lock_sha256(args.config))
    out = Console(width=None if Console().is_terminal else 160)
    out.print(results.table(doc))
    for line in results.cold_lines(doc):
        out.print(line)
    if args.output:
        Path(args.output).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.output}")


def _compare(args: argparse.Namespace) -> None:
    from rich.console import Console

    from . import compare, results

    docs = [(Path(p).name, results.load(Path(p))) for p in args.files]
    console = Console(width=None if Console().is_terminal else 160)
    for table in compare.tables(docs):
        console.print(table)
    if args.plots:
        from .plots import write_plots

        for path in write_plots(docs, Path(args.plots)):
            print(f"wrote {path}")


def register(command) -> None:
    """Add `bench` (and `bench compare`) to the `homestack` parser."""
    p = command("bench", _bench, "Load-test an OpenAI-compatible URL: TTFT, TPOT, ITL, latency, throughput, goodput.")
    p.add_argument("--url", default="http://127.0.0.1:8080/v1", help="API base ending in /v1 (default: the local gateway)")
    p.add_argument("--model", "-m", required=False, help="model name (required)")
    p.add_argument("--api-key", help="key (default $HOMESTACK_API_KEY)")
    p.add_argument("--api", choices=["chat", "completions"], default="chat", help="which API (default chat)")
    p.add_argument("--concurrency", type=_numbers(int), default=[1], metavar="N[,N...]",
                   help="requests in flight; a list is a sweep (default 1)")
    p.add_argument("--rate", type=_numbers(float), metavar="R[,R...]",
                   help="requests per second with Poisson arrivals, instead of --concurrency")
    p.add_argument("--requests", "-n", type=int, default=16, help="measured requests per level (default 16)")
    p.add_argument("--input-tokens", type=int, default=128, help="synthetic prompt length in tokens (default 128)")
    p.add_argument("--output-tokens", type=int, default=64, help="tokens to generate per request (default 64)")
    p.add_argument("--dataset", metavar="FILE", help="JSONL of request bodies instead of synthetic prompts")
    p.add_argument("--workload", choices=SHIPPED_WORKLOADS, help="a shipped JSONL workload instead of synthetic "
                   "prompts: code-edit (rewrite a function with one change; where n-gram speculation pays off)")
    p.add_argument("--slo", metavar="SPEC", help="goodput SLOs, e.g. ttft=2s,tpot=100ms (also itl, e2e)")
    p.add_argument("--cold", action="store_true",
                   help="unload the model before each request; report load time (client vs runner log)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured requests before each level (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed for prompts and arrivals (default 0)")
    p.add_argument("--no-ignore-eos", action="store_true", help="let the model stop before --output-tokens")
    p.add_argument("--timeout", type=float, default=600, help="seconds per request (default 600)")
    p.add_argument("--config", "-c", metavar="FILE", help="fleet file whose homestack.lock hash to record")
    p.add_argument("-o", "--output", metavar="FILE", help="write the results JSON here")
    commands = p.add_subparsers(dest="bench_command", metavar="COMMAND")
    c = commands.add_parser("compare", help="compare results files: deltas, verdicts, plots",
                            description="Compare results files: deltas with a verdict per figure, and plots.")
    c.set_defaults(func=_compare)
    c.add_argument("files", nargs="+", metavar="RESULTS.json", help="the first is the baseline")
    c.add_argument("--plots", metavar="DIR", help="write PNG plots here (latency CDFs, throughput vs concurrency)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "commands:\n  " + c.format_usage().removeprefix("usage: ").strip()
