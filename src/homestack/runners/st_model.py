"""What a sentence-transformers model directory says about itself: its pooling and its longest input.

The engines that run such a model without sentence-transformers (the GGUF for
llama.cpp, the ONNX graph for ONNX Runtime) read the same files it does.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError

SEQUENCE_CONFIG = "sentence_bert_config.json"
# Texts per forward pass, in every engine of homestack's embeddings server. Small: a batch of 12
# texts of 200 tokens keeps its activations (the feed-forward's are 12 x 200 x 1,536 floats) in
# the CPU's cache. On the 2-core development machine sentence-transformers embedded 70 chunks/s in
# batches of 12 against 51 in its default 32, and the int8 ONNX graph 150 against 91.
BATCH = 12


def pooling_mode(model_dir: Path) -> str:
    """``mean`` or ``cls``: how the token vectors become one (modules.json's Pooling module)."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        pooling_dir = next(m["path"] for m in modules if m["type"].endswith(".Pooling"))
        pooling = json.loads((model_dir / pooling_dir / "config.json").read_text())
    except (OSError, ValueError, StopIteration, KeyError):
        return "mean"  # sentence-transformers' default
    if pooling.get("pooling_mode_cls_token"):
        return "cls"
    if pooling.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise ConfigError(f"{model_dir}: only mean or CLS pooling is supported outside sentence-transformers")


def conversion_target(model_dir: Path, data_dir: Path, fmt: str, name: str) -> Path:
    """Where ``model_dir``'s safetensors converted to ``fmt`` are kept under ``data_dir``, ``name`` ending the
    entry: named by the source's size and mtime, so a changed model is converted anew."""
    source = model_dir / "model.safetensors"
    if not source.is_file():
        raise ConfigError(f"{model_dir}: no model.safetensors to convert to {fmt}")
    st = source.stat()
    return data_dir / "converted" / f"{model_dir.parent.name}-{st.st_size}-{st.st_mtime_ns}-{name}"


def max_tokens(model_dir: Path, default: int) -> int:
    """The tokens sentence-transformers keeps of one input (the rest is cut), ``default`` if unset."""
    try:
        return int(json.loads((model_dir / SEQUENCE_CONFIG).read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return default
