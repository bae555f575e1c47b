"""The llama-server options homestack reads (to size memory) or sets (to keep that size).

One table of spellings and environment variables, for the launcher (which adds
its defaults only where the user set nothing) and for the memory planner.
"""

from __future__ import annotations

from typing import Literal

CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]

# field -> (spellings, environment variable llama-server also reads, if any)
VALUE_OPTIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "ctx_size": (("-c", "--ctx-size"), "LLAMA_ARG_CTX_SIZE"),
    "parallel": (("-np", "--parallel"), "LLAMA_ARG_N_PARALLEL"),
    "batch": (("-b", "--batch-size"), "LLAMA_ARG_BATCH"),
    "ubatch": (("-ub", "--ubatch-size"), "LLAMA_ARG_UBATCH"),
    "type_k": (("-ctk", "--cache-type-k"), "LLAMA_ARG_CACHE_TYPE_K"),
    "type_v": (("-ctv", "--cache-type-v"), "LLAMA_ARG_CACHE_TYPE_V"),
    "type_k_draft": (("-ctkd", "--cache-type-k-draft", "--spec-draft-type-k"), "LLAMA_ARG_SPEC_DRAFT_CACHE_TYPE_K"),
    "type_v_draft": (("-ctvd", "--cache-type-v-draft", "--spec-draft-type-v"), "LLAMA_ARG_SPEC_DRAFT_CACHE_TYPE_V"),
    "flash_attn": (("-fa", "--flash-attn"), "LLAMA_ARG_FLASH_ATTN"),
    "gpu_layers": (("-ngl", "--gpu-layers", "--n-gpu-layers"), "LLAMA_ARG_N_GPU_LAYERS"),
    "cache_ram_mib": (("-cram", "--cache-ram"), "LLAMA_ARG_CACHE_RAM"),
    "ctx_checkpoints": (("-ctxcp", "--ctx-checkpoints", "--swa-checkpoints"), "LLAMA_ARG_CTX_CHECKPOINTS"),
    "kv_unified_per_slot": (("--kv-unified-per-slot",), "LLAMA_ARG_KV_UNIFIED_PER_SLOT"),
    "fit": (("-fit", "--fit"), "LLAMA_ARG_FIT"),
    "poll": (("--poll",), None),  # no environment variable
}
# spelling -> (field, value) for options that take no value
FLAGS = {"--swa-full": ("swa_full", True), "-kvu": ("kv_unified", True), "--kv-unified": ("kv_unified", True),
         "-no-kvu": ("kv_unified", False), "--no-kv-unified": ("kv_unified", False)}
FLAG_ENV = {"LLAMA_ARG_SWA_FULL": "swa_full", "LLAMA_ARG_KV_UNIFIED": "kv_unified"}


def spelling(arg: str) -> str:
    """llama.cpp accepts "_" for "-" in long options."""
    return arg.replace("_", "-") if arg.startswith("--") else arg


def user_sets(field: str, args: list[str], env: dict[str, str]) -> bool:
    spellings, variable = VALUE_OPTIONS[field]
    return (variable is not None and variable in env) or any(spelling(arg) in spellings for arg in args)
