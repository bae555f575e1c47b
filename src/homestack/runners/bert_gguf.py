"""A sentence-transformers BERT model (all-MiniLM-L6-v2) written as a GGUF file for llama-server.

llama.cpp runs BERT encoders with mean pooling (``llama-server --embedding
--pooling mean``); its own converter ships only in its source tree, so this
writes the same layout with the `gguf` package straight from the model's
safetensors: llama.cpp's tensor names, its BERT hyper-parameters and its
WordPiece vocabulary (word-initial pieces get the "▁" prefix, "##" continuations
lose theirs, special tokens stay as they are). Weights stay float32, so
the vectors match sentence-transformers' to rounding (cosine 1.00000 on the
benchmark's chunks); ``matrices`` (F16, Q8_0) writes smaller files to try.

The file is written once, next to nothing else, in ``DATA_DIR/converted/``,
keyed by the safetensors file's size and mtime; a later start reuses it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..errors import ConfigError
from .st_model import conversion_target, pooling_mode

_SKIPPED = ("embeddings.position_ids", "pooler.")  # a buffer, and the unused classification pooler
MATRICES = "F32"


def _pooling(model_dir: Path) -> int:
    import gguf

    return {"mean": gguf.PoolingType.MEAN, "cls": gguf.PoolingType.CLS}[pooling_mode(model_dir)]


def _vocabulary(model_dir: Path) -> tuple[list[str], list[int]]:
    import gguf

    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    ordered = sorted(vocab, key=vocab.get)
    tokens, types = [], []
    for piece in ordered:
        if piece in special:
            tokens.append(piece)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(piece[2:] if piece.startswith("##") else "\u2581" + piece)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def convert(model_dir: Path, out: Path, matrices: str = MATRICES) -> Path:
    """Write ``out`` from the sentence-transformers directory ``model_dir``, the layers' matrices as
    ``matrices`` (a GGML type name: Q8_0, F16, F32); returns ``out``."""
    import gguf
    from safetensors import safe_open

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ConfigError(f"{model_dir}: only BERT models convert to GGUF (model_type {config.get('model_type')!r})")
    blocks = config["num_hidden_layers"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, blocks)
    staged = out.with_suffix(".gguf.tmp")
    writer = gguf.GGUFWriter(str(staged), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(blocks)
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(_pooling(model_dir))
    writer.add_file_type(gguf.LlamaFileType["ALL_F32" if matrices == "F32" else f"MOSTLY_{matrices}"])
    tokens, types = _vocabulary(model_dir)
    writer.add_token_type_count(config.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # quiet: it warns of token types this gguf version has no key for (cls), which llama.cpp reads as [CLS] anyway
    logging.getLogger("gguf.vocab").setLevel(logging.ERROR)
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens)).add_to_gguf(writer)
    with safe_open(str(model_dir / "model.safetensors"), "np") as weights:
        for name in weights.keys():
            if name.startswith(_SKIPPED):
                continue
            target = names.get_name(name.removeprefix("bert."), try_suffixes=(".weight", ".bias"))
            if target is None:
                raise ConfigError(f"{model_dir}: tensor {name} has no llama.cpp BERT name")
            data = weights.get_tensor(name).astype("float32")
            kind = gguf.GGMLQuantizationType[matrices] if data.ndim == 2 and target.startswith("blk.") else gguf.GGMLQuantizationType.F32
            if kind != gguf.GGMLQuantizationType.F32:
                data = gguf.quants.quantize(data, kind)
            writer.add_tensor(target, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(staged, out)
    return out


def converted(model_dir: Path, data_dir: Path) -> Path:
    """The GGUF file for ``model_dir``, written on first use under ``data_dir``."""
    out = conversion_target(model_dir, data_dir, "GGUF", f"{MATRICES}.gguf")
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert(model_dir, out)
    return out
