"""A GGUF model as a Hugging Face directory (config, tokenizer, safetensors), for runners that cannot read GGUF.

vLLM's CPU build does not load GGUF files; the shipped SmolLM2 is one. transformers reads the
GGUF (its loader dequantizes with the gguf package and undoes llama.cpp's Q/K row permutation);
the weights are written with ``safetensors.save_file``, because ``save_pretrained`` refuses a
model loaded from a quantized file (and loading one needs accelerate). The result is cached in the data dir under a name holding the
GGUF's sha256 and this converter's version, and built once (into a temporary directory, renamed).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from ..errors import ConfigError
from .hashes import HashCache

_VERSION = "1"  # bump when the output changes: the cache key holds it
_DTYPE = "bfloat16"  # vLLM's CPU default; half the bytes of float32
_MARKER = "homestack-converted"  # written last: a directory without it is incomplete


def converted_dir(gguf: Path, data_dir: Path) -> Path:
    """Where ``gguf`` converted lives (whether or not it is built yet)."""
    sha = HashCache(data_dir / "cache" / "sha256.json")
    digest = sha.sha256(gguf)
    sha.save()
    key = hashlib.sha256(f"{digest}:{_VERSION}:{_DTYPE}".encode()).hexdigest()[:16]
    return data_dir / "models" / "hf" / f"{gguf.stem}-{key}"


def hf_from_gguf(gguf: Path, data_dir: Path) -> Path:
    """The Hugging Face directory for ``gguf``, converting it once."""
    target = converted_dir(gguf, data_dir)
    if (target / _MARKER).exists():
        return target
    try:
        import transformers  # noqa: F401  (with torch and safetensors: the vllm extra installs them)
    except ImportError as exc:
        raise ConfigError(f"converting {gguf.name} for vLLM needs transformers and torch "
                          f"(pip install -e '.[vllm]'): {exc}") from None
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _convert(gguf, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import safetensors.torch
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    from transformers.utils import logging

    logging.disable_progress_bar()
    source = {"pretrained_model_name_or_path": str(gguf.parent), "gguf_file": gguf.name}
    config = AutoConfig.from_pretrained(**source)
    config.dtype = _DTYPE
    config.save_pretrained(out)
    AutoTokenizer.from_pretrained(**source).save_pretrained(out)
    with torch.device("meta"):  # only its parameter names: they map the GGUF's tensors
        skeleton = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=skeleton,
                                   torch_dtype=getattr(torch, _DTYPE))["tensors"]
    tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
    if getattr(config, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)  # shares the embedding's storage; safetensors refuses aliases
    safetensors.torch.save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    (out / _MARKER).write_text(f"{gguf}\n")
