"""`homestack knowledge serve` and `homestack kb ...`.

Each command imports what it needs when it runs, so other commands stay fast.
The `kb` commands talk to the running knowledge service (--url, else
$HOMESTACK_KNOWLEDGE_URL, else http://127.0.0.1:8081) and print JSON with --json.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path


def _client(args: argparse.Namespace):
    from .http import KnowledgeClient

    return KnowledgeClient(args.url, api_key=args.api_key)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _serve(args: argparse.Namespace, endpoint=None) -> None:
    from ...config import load_fleet
    from ..service.server import serve

    serve(load_fleet(args.config), args.host, args.port, args.gateway, no_auth=args.no_auth, endpoint=endpoint)


def _collections(args: argparse.Namespace) -> None:
    collections = _client(args).json("GET", "/collections")["collections"]
    if args.json:
        _print_json(collections)
    elif not collections:
        print("no collections")
    for c in [] if args.json else collections:
        print(f"{c['name']}: {c['sources']} sources, {c['points']} chunks ({c['embedding_model']}, {c['dimensions']} dims)")


def _create(args: argparse.Namespace) -> None:
    info = _client(args).json("POST", "/collections", {"name": args.name})
    _print_json(info) if args.json else print(f"created {info['name']} ({info['dimensions']} dims)")


def _delete(args: argparse.Namespace) -> None:
    _client(args).json("DELETE", f"/collections/{args.name}")
    print(f"deleted {args.name}")


def _remove(args: argparse.Namespace) -> None:
    source = str(Path(args.source).expanduser().resolve()) if Path(args.source).exists() else args.source
    done = _client(args).json("DELETE", f"/collections/{args.collection}/sources", source=source)
    print(f"removed {done['deleted']} chunks of {done['source']}")


def _sources(args: argparse.Namespace) -> None:
    sources = _client(args).json("GET", f"/collections/{args.collection}/sources")["sources"]
    if args.json:
        _print_json(sources)
    for s in [] if args.json else sources:
        print(f"{s['chunks']:6d}  {s['source']}" + ("" if s["complete"] else "  (incomplete: re-ingest it)"))


def _ingest(args: argparse.Namespace, sync: bool = False) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..ingest.files import find_files, ingest_files

    root = Path(args.dir).expanduser().resolve() if sync else None
    if sync and not root.is_dir():
        from ...errors import HomestackError

        raise HomestackError(f"{args.dir}: not a folder")
    files = find_files([str(root)] if sync else args.paths)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=args.json or not console.is_terminal, transient=True) as bar:
        task = bar.add_task(f"ingesting into {args.collection}", total=len(files))

        def on_file(event: dict) -> None:
            if event["status"] == "failed":
                bar.console.print(f"homestack: skipped {event.get('error')}", markup=False, soft_wrap=True)
            if event["status"] != "removed":
                bar.advance(task)

        report = ingest_files(_client(args), args.collection, files, args.tag or [], on_file, root)
    if args.json:
        _print_json(report.to_dict())
        return
    failed = f", {len(report.failed)} failed" if report.failed else ""
    removed = f", {report.removed} removed" if sync else ""
    print(f"{args.collection}: {report.added} added, {report.replaced} replaced, {report.skipped} unchanged"
          f"{removed}{failed}; {report.chunks} chunks written")


def _search(args: argparse.Namespace) -> None:
    body = {"collection": args.collection, "query": args.query, "mode": args.mode, "k": args.k,
            "score_threshold": args.min_score, "filters": {"source": args.source or [], "tags": args.tag or []}}
    results = _client(args).json("POST", "/search", body)["results"]
    if args.json:
        _print_json(results)
        return
    if not results:
        print("no results")
    for i, r in enumerate(results, 1):
        print(f"[{i}] {r['score']:.4f}  {_where(r['source'], r['page'], r['heading'])}\n    {r['snippet']}")


def _ask(args: argparse.Namespace) -> None:
    body = {"collection": args.collection, "question": args.question, "k": args.k}
    result = _client(args).json("POST", "/ask", body)
    if args.json:
        _print_json(result)
        return
    print(result["answer"])
    if result["sources"]:
        print("\nSources:")
    for s in result["sources"]:
        print(f"[{s['n']}] {_where(s['path'], s['page'], s['heading'])}\n    {s['snippet']}")


def _where(path: str, page: int | None, heading: str) -> str:
    return ", ".join([path] + ([f"page {page}"] if page else []) + ([heading] if heading else []))


def _stats(args: argparse.Namespace) -> None:
    stats = _client(args).json("GET", "/stats")
    if args.json:
        _print_json(stats)
        return
    print(f"store {stats['store']}; gateway {stats['gateway']}; embeddings {stats['embedding_model']}; "
          f"answers {stats['chat_model']}")
    for c in stats["collections"]:
        print(f"  {c['name']}: {c['sources']} sources, {c['points']} chunks, {c['store']['segments']} segments"
              + (f"; {c['notice']}" if c.get("notice") else ""))


def _backup(args: argparse.Namespace) -> None:
    size = _client(args).download("/backup", Path(args.dest))
    print(f"wrote {args.dest} ({size} bytes)")


def _restore(args: argparse.Namespace) -> None:
    restored = _client(args).upload("/restore", Path(args.src), replace=str(args.replace).lower())["restored"]
    print("restored " + (", ".join(f"{name} ({n} chunks)" for name, n in restored.items()) or "nothing"))


def _eval(args: argparse.Namespace) -> None:
    from ..evaluation.evaluate import print_report, run_eval

    report = run_eval(_client(args), Path(args.corpus), Path(args.queries), Path(args.qrels), args.k)
    _print_json(report) if args.json else print_report(report)


def register_service(command, endpoint=None) -> None:
    """Add `knowledge serve` (mounting `endpoint`, see service.server.Endpoint) to the `homestack` parser."""
    p = command("knowledge", lambda args: None, "The knowledge service (retrieval with cited answers).")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    serve = p.add_subparsers(dest="knowledge_command", metavar="COMMAND", required=True).add_parser(
        "serve", help="run the knowledge service alone", description="Run the knowledge service alone.")
    serve.set_defaults(func=functools.partial(_serve, endpoint=endpoint))
    serve.add_argument("--config", "-c", metavar="FILE", help="fleet file (YAML); its knowledge: section")
    serve.add_argument("--host", help="address to bind (default knowledge.host, 127.0.0.1)")
    serve.add_argument("--no-auth", action="store_true",
                       help="check no token or keys (loopback addresses only)")
    serve.add_argument("--port", type=int, help="port to bind (default knowledge.port, 8081; 0 lets the OS pick)")
    serve.add_argument("--gateway", metavar="URL", help="gateway for embeddings and answers")
    p.epilog = "commands:\n  " + serve.format_usage().removeprefix("usage: ").strip()



def register_kb(command) -> None:
    """Add `kb ...` to the `homestack` parser."""
    kb = command("kb", lambda args: None, "Knowledge bases: ingest, search, ask (talks to the service).")
    kb.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = kb.add_subparsers(dest="kb_command", metavar="COMMAND", required=True)

    def kb_command(name: str, func, help: str, collection: bool = True) -> argparse.ArgumentParser:
        c = commands.add_parser(name, help=help, description=help)
        c.set_defaults(func=func)
        c.add_argument("--url", help="knowledge service URL (default $HOMESTACK_KNOWLEDGE_URL or http://127.0.0.1:8081)")
        c.add_argument("--api-key", metavar="KEY", help="key with the knowledge roles (default $HOMESTACK_API_KEY)")
        c.add_argument("--json", action="store_true", help="print JSON")
        if collection:
            c.add_argument("--collection", "-c", default="default", metavar="NAME", help="collection (default: default)")
        return c

    kb_command("collections", _collections, "List collections.", collection=False)
    kb_command("create", _create, "Create a collection.", collection=False).add_argument("name", metavar="NAME")
    kb_command("delete", _delete, "Delete a collection and everything in it.", collection=False).add_argument("name", metavar="NAME")
    kb_command("remove", _remove, "Remove one source's chunks from a collection.").add_argument("source", metavar="SOURCE")
    kb_command("sources", _sources, "List a collection's sources.")
    c = kb_command("ingest", _ingest, "Add files and folders (PDF, Markdown, HTML, text); unchanged files are skipped.")
    c.add_argument("paths", nargs="+", metavar="PATH")
    c.add_argument("--tag", action="append", metavar="TAG", help="tag the chunks (repeatable)")
    c = kb_command("sync", lambda args: _ingest(args, sync=True), "Make a collection match a folder: add, replace, remove.")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("--tag", action="append", metavar="TAG", help="tag the chunks (repeatable)")
    c = kb_command("search", _search, "Search a collection (hybrid unless --mode says otherwise).")
    c.add_argument("query", metavar="QUERY")
    c.add_argument("--mode", choices=["hybrid", "dense", "sparse"], default="hybrid")
    c.add_argument("-k", type=int, default=None, help="results (default knowledge.top_k)")
    c.add_argument("--source", action="append", metavar="PATH", help="only this source (repeatable)")
    c.add_argument("--tag", action="append", metavar="TAG", help="only chunks with this tag (repeatable)")
    c.add_argument("--min-score", type=float, metavar="X", help="drop results scoring below X (in the mode's score)")
    c = kb_command("ask", _ask, "Answer a question from a collection, citing its sources.")
    c.add_argument("question", metavar="QUESTION")
    c.add_argument("-k", type=int, default=None, help="sources to retrieve (default knowledge.top_k)")
    kb_command("stats", _stats, "The service's store, models and collections.", collection=False)
    kb_command("backup", _backup, "Write every collection to a tar.gz.", collection=False).add_argument("dest", metavar="DEST")
    c = kb_command("restore", _restore, "Restore collections from a backup.", collection=False)
    c.add_argument("src", metavar="SRC")
    c.add_argument("--replace", action="store_true", help="replace collections that already exist")
    c = kb_command("eval", _eval, "Retrieval quality on a BEIR dataset: recall, precision, MRR, nDCG; latency.",
                   collection=False)
    c.add_argument("--corpus", required=True, metavar="FILE", help="corpus.jsonl")
    c.add_argument("--queries", required=True, metavar="FILE", help="queries.jsonl")
    c.add_argument("--qrels", required=True, metavar="FILE", help="qrels/test.tsv")
    c.add_argument("-k", type=int, default=10, help="cut-off for recall@k and precision@k (default 10)")
    kb.epilog = "commands:\n" + "\n".join("  " + c.format_usage().removeprefix("usage: ").strip()
                                          for c in commands.choices.values())
