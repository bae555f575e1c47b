"""PNG plots of results files: latency CDFs per figure, and throughput against concurrency."""

from __future__ import annotations

from pathlib import Path

from .results import label
from .stats import LATENCIES


def write_plots(docs: list[tuple[str, dict]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (figure, get) in zip(axes.flat, LATENCIES.items()):
        for name, doc in docs:
            for run in doc["runs"]:
                values = sorted(v * 1000 for s in run["samples"] if not s.get("error") for v in get(s))
                if values:
                    ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post",
                            label=f"{name} {label(run)}")
        ax.set_xlabel(f"{figure} (ms)")
        ax.set_ylabel("share of requests" if figure != "itl" else "share of token gaps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Latency CDFs")
    fig.tight_layout()
    written.append(_save(fig, out_dir / "latency_cdf.png", plt))

    fig, (tokens, requests) = plt.subplots(1, 2, figsize=(11, 4))
    for name, doc in docs:
        runs = [r for r in doc["runs"] if r["mode"] == "concurrency"]
        if runs:
            levels = [r["value"] for r in runs]
            tokens.plot(levels, [r["summary"]["output_tokens_per_s"] for r in runs], marker="o", label=name)
            requests.plot(levels, [r["summary"]["requests_per_s"] for r in runs], marker="o", label=name)
    for ax, what in ((tokens, "output tokens/s"), (requests, "requests/s")):
        ax.set_xlabel("concurrency")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Throughput against concurrency")
    fig.tight_layout()
    written.append(_save(fig, out_dir / "throughput.png", plt))
    return written


def _save(fig, path: Path, plt) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
