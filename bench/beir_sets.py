"""Public retrieval test collections in BEIR format, built from Debian's manual pages.

No BEIR collection can be installed from a package registry here, so the
benchmark builds known-item collections from public text that Debian ships:
each manual page is a document (its DESCRIPTION, with the page's names as title)
and its one-line NAME summary ("open and possibly create a file") is the query
that must find it. Two sets: the C programming interface (sections 2 and 3, the
`manpages-dev` package) and commands, files and overviews (sections 1, 5, 7, 8 of
a fixed list of packages).
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
from pathlib import Path

SETS = {
    "man-c-api": (("manpages-dev",), (".2.gz", ".3.gz")),
    "man-commands": (("manpages", "coreutils", "util-linux", "procps", "findutils", "grep", "sed", "tar", "gzip",
                      "iproute2", "openssh-client", "git", "man-db", "dpkg", "apt", "systemd", "bash", "curl"),
                     (".1.gz", ".5.gz", ".7.gz", ".8.gz")),
}
_BODY_CHARS = 1500
_FONT = re.compile(r"\\f(\[[^\]]*\]|\(..|.)")
_ESCAPE = re.compile(r"\\(\[[^\]]*\]|\(..|[&|^%:c])")
_TEXT_MACROS = {"B", "I", "BR", "IR", "RB", "RI", "BI", "IB", "SM", "SB", "TP", "IP", "UR", "MT"}


def _ensure_packages(packages: tuple[str, ...]) -> None:
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True)


def _roff_text(line: str) -> str:
    if line.startswith((".", "'")):
        macro, _, args = line[1:].partition(" ")
        if macro not in _TEXT_MACROS:
            return ""
        line = args.replace('"', "")
    line = _FONT.sub("", line).replace("\\-", "-").replace("\\e", "\\")
    return _ESCAPE.sub("", line).strip()


def _sections(source: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in source.splitlines():
        if line.startswith((".SH", ".Sh")):
            current = line[3:].strip().strip('"').upper()
            out.setdefault(current, [])
        elif current is not None and not line.startswith('.\\"'):
            text = _roff_text(line)
            if text:
                out[current].append(text)
    return {name: " ".join(lines) for name, lines in out.items()}


def _page(path: Path) -> tuple[str, str, str] | None:
    source = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
    if source.lstrip().startswith(".so "):
        return None  # an alias of another page
    sections = _sections(source)
    names, dash, summary = sections.get("NAME", "").partition(" - ")
    body = sections.get("DESCRIPTION", "")
    if not dash or len(summary.split()) < 3 or len(body.split()) < 20:
        return None
    return names.strip(), summary.strip(), body[:_BODY_CHARS].rsplit(" ", 1)[0]


def build(name: str, folder: Path) -> Path:
    """Write the set as ``folder/name/{corpus.jsonl, queries.jsonl, qrels/test.tsv}``; returns its folder."""
    packages, suffixes = SETS[name]
    _ensure_packages(packages)
    files = sorted({Path(f) for p in packages for f in subprocess.run(
        ["dpkg", "-L", p], capture_output=True, text=True).stdout.splitlines()
        if f.startswith("/usr/share/man/man") and f.endswith(suffixes)})
    docs, queries, seen = [], [], set()
    for path in files:
        page = _page(path) if path.is_file() else None
        if page is None or page[1].lower() in seen:
            continue  # summaries shared by several pages make no known-item query
        seen.add(page[1].lower())
        doc_id = path.name.removesuffix(".gz")
        docs.append({"_id": doc_id, "title": page[0], "text": page[2]})
        queries.append({"_id": doc_id, "text": page[1]})
    out = folder / name
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (out / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (out / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q['_id']}\t{q['_id']}\t1\n" for q in queries))
    return out


if __name__ == "__main__":
    import sys
    import tempfile

    target = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    for set_name in SETS:
        built = build(set_name, target)
        print(set_name, sum(1 for _ in (built / "corpus.jsonl").open()), "documents in", built)
