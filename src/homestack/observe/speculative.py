"""Speculative decoding's acceptance, read from a llama.cpp runner's own /metrics text.

llama-server counts the tokens its drafts proposed and the tokens the target accepted
(``llamacpp:spec_decode_num_draft_tokens_total``, ``..._accepted_tokens_total``) since it started;
their ratio is the acceptance rate, the figure that says whether speculation pays.
"""

from __future__ import annotations

import re

_COUNTERS = {
    "drafted": "llamacpp:spec_decode_num_draft_tokens_total",
    "accepted": "llamacpp:spec_decode_num_accepted_tokens_total",
    "drafts": "llamacpp:spec_decode_num_drafts_total",
}
_SAMPLE = re.compile(r"^(llamacpp:spec_decode_num_[a-z_]+_total)\s+(\S+)\s*$", re.MULTILINE)


def acceptance(metrics_text: str | None) -> dict[str, float | int | None] | None:
    """``{drafted, accepted, drafts, acceptance}`` from a runner's metrics; None when it has no such counters."""
    if not metrics_text:
        return None
    values = {name: float(value) for name, value in _SAMPLE.findall(metrics_text)}
    if _COUNTERS["drafted"] not in values:
        return None
    counts: dict[str, float | int | None] = {key: int(values.get(name, 0)) for key, name in _COUNTERS.items()}
    drafted, accepted = counts["drafted"], counts["accepted"]
    counts["acceptance"] = round(accepted / drafted, 4) if drafted else None
    return counts


def format_acceptance(info: dict | None) -> str:
    """``ngram-mod 0.83 (415/500)`` for ``homestack ps``; ``-`` when the model does not speculate."""
    if not info:
        return "-"
    rate = info.get("acceptance")
    counts = f" ({info['accepted']}/{info['drafted']})" if info.get("drafted") is not None else ""
    return f"{info['type']} {rate:.2f}{counts}" if rate is not None else f"{info['type']}{counts}"
