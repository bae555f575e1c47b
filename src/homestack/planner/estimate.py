"""How much memory a runner process holds, per device, before it is started.

llama-server: the buffers llama.cpp allocates, sized by its own rules
(src/llama-context.cpp, src/llama-kv-cache*.cpp, ggml-cpu/repack.cpp), from the
GGUF header and the exact argv homestack will run; plus a runtime overhead
calibrated against the real process (bench/memory.py).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, fields, replace

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ..errors import ConfigError
from ..runners.llama_options import FLAG_ENV, FLAGS, VALUE_OPTIONS, spelling
from .gguf import GGUFInfo, layer_of, read_gguf_info

MIB = 1 << 20
_PAD = 256  # llama.cpp pads n_ctx, n_ctx_seq and the SWA cache to 256 cells
# ggml-cpu repacks these weight types for faster matmuls into a second, same-size buffer
# (the mmapped original stays resident too); Q2_K also on AVX-512, not counted here
_REPACKED = {
    "x86_64": {"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"},
    "aarch64": {"Q4_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "MXFP4", "Q8_0"},
}
# Compute buffer with flash attention, fitted to sched_reserve's "CPU compute buffer size"
# for SmolLM2-135M and Gemma-3-270M at n_ubatch 256/512/1024 and 2k-32k contexts (exact to 0.1 MiB):
# activations of (3 n_ff + 5 n_embd) f32 per ubatch token, plus an f16 KQ mask per KV cache.
_ACTIVATION_FF, _ACTIVATION_EMBD = 3, 5
# Runtime overhead beyond the buffers, fitted to VmRSS after a context-filling request
# (bench/memory.py, 12 cases): binary and libraries, threads, HTTP server, and the
# tokenizer's tables, which grow with the vocabulary.
_OVERHEAD_FIXED = 40 * MIB
_OVERHEAD_PER_TOKEN = 100  # bytes per vocabulary entry
_GPU_RUNTIME = 300 * MIB  # CUDA context and kernels per device: a typical figure, not measured here


@dataclass(frozen=True)
class Components:
    """Bytes one process holds on one device."""

    weights: int = 0
    kv_cache: int = 0
    compute: int = 0
    overhead: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


@dataclass(frozen=True)
class MemoryEstimate:
    devices: dict[str, Components]  # "cpu", then "gpu0", "gpu1"... for offloaded layers
    # llama.cpp only: layers (repeating layers and the output layer) and how many of them are
    # offloaded to GPUs, as llama-server's -ngl counts them; None for runners without layers.
    layers: int | None = None
    gpu_layers: int | None = None

    @property
    def total(self) -> int:
        return sum(c.total for c in self.devices.values())

    def to_dict(self) -> dict:
        devices = {
            name: {"weights": c.weights, "kv_cache": c.kv_cache, "compute": c.compute,
                   "overhead": c.overhead, "total": c.total}
            for name, c in self.devices.items()
        }
        return {"devices": devices, "total": self.total, "layers": self.layers, "gpu_layers": self.gpu_layers}


def estimate_from_settings(info: GGUFInfo, s: ServerSettings, gpus: int = 0) -> MemoryEstimate:
    """The estimate for a model header and llama-server's settings."""
    ctx = _Context.of(info, s)
    device_of = _layer_devices(info.block_count, s.gpu_layers, gpus)
    names = ["cpu"] + [f"gpu{i}" for i in range(gpus)]
    weights = _weights(info, device_of, names)
    kv = dict.fromkeys(names, 0)
    for layer, cells in enumerate(ctx.cells_per_layer(info)):
        kv[names[device_of[layer]]] += cells * _kv_bytes_per_cell(info, layer, s)
    used = {names[d] for d in device_of} | {"cpu"}
    compute = {name: _compute(info, ctx, s) if name in used else 0 for name in names}
    if all(device_of[: info.block_count]):  # every repeating layer is on a GPU
        compute["cpu"] = 2 * ctx.n_ubatch * info.embedding_length * 4  # input embeddings only
    compute["cpu"] += ctx.n_seq * info.vocab_size * 4  # the logits output buffer lives on the host
    overhead = {name: _GPU_RUNTIME if name in used else 0 for name in names}
    overhead["cpu"] = _OVERHEAD_FIXED + _OVERHEAD_PER_TOKEN * info.vocab_size + _runtime_caches(info, ctx, s)
    return MemoryEstimate({
        name: Components(weights[name], kv[name], compute[name], overhead[name])
        for name in names if name == "cpu" or name in used
    }, layers=len(device_of), gpu_layers=sum(1 for device in device_of if device))


def with_draft(target: MemoryEstimate, draft: GGUFInfo, s: ServerSettings, gpus: int = 0) -> MemoryEstimate:
    """``target`` plus a speculative draft model, which llama-server loads beside it.

    The draft gets its own context at the target's size and slots (this llama-server has no draft
    context flag), with the draft cache types, on the same devices; it shares the target's process,
    so no second fixed overhead, prompt cache or context checkpoints: only its vocabulary tables.
    """
    own = replace(s, type_k=s.type_k_draft, type_v=s.type_v_draft, cache_ram_mib=0, ctx_checkpoints=0)
    extra = estimate_from_settings(draft, own, gpus)
    devices = dict(target.devices)
    for name, c in extra.devices.items():
        shared = _OVERHEAD_FIXED if name == "cpu" else _GPU_RUNTIME
        base = devices.get(name, Components())
        devices[name] = Components(base.weights + c.weights, base.kv_cache + c.kv_cache,
                                   base.compute + c.compute, base.overhead + c.overhead - shared)
    return MemoryEstimate(devices, target.layers, target.gpu_layers)


@dataclass(frozen=True)
class ServerSettings:
    """The llama-server options that size its memory, with llama-server's defaults."""

    ctx_size: int = 0  # 0: the model's training context
    parallel: int = -1  # -1: auto, which is 4 slots sharing a unified KV cache
    batch: int = 2048
    ubatch: int = 512
    type_k: str = "f16"
    type_v: str = "f16"
    type_k_draft: str = "f16"
    type_v_draft: str = "f16"
    flash_attn: str = "auto"
    gpu_layers: int | None = None  # None: auto/all, which with --fit off offloads everything
    cache_ram_mib: int = 8192
    ctx_checkpoints: int = 32
    swa_full: bool = False
    kv_unified: bool = False
    kv_unified_per_slot: int = 0

    @property
    def flash_attn_off(self) -> bool:
        return self.flash_attn.lower() in ("off", "0", "false", "disabled", "no")


_OPTION_FIELD = {spelling: name for name, (spellings, _) in VALUE_OPTIONS.items() for spelling in spellings}
_ENV = {variable: name for name, (_, variable) in VALUE_OPTIONS.items()} | FLAG_ENV
_SIZED = {f.name for f in fields(ServerSettings)}  # the options that change memory; --fit, say, does not


def server_settings(args: list[str], env: dict[str, str] | None = None) -> ServerSettings:
    """Read llama-server's argv (without the binary) as it does: environment first, last option wins."""
    values: dict[str, str | bool] = {}
    for var, name in _ENV.items():
        if env and var in env:
            values[name] = env[var]
    i = 0
    while i < len(args):
        arg = spelling(args[i])
        if arg in _OPTION_FIELD and i + 1 < len(args):
            values[_OPTION_FIELD[arg]] = args[i + 1]
            i += 1
        elif arg in FLAGS:
            name, value = FLAGS[arg]
            values[name] = value
        i += 1
    sized = {name: _convert(name, value) for name, value in values.items() if name in _SIZED}
    return replace(ServerSettings(), **sized)


def _convert(name: str, value: str | bool):
    kind = {f.name: f.type for f in fields(ServerSettings)}[name]
    if isinstance(value, bool) or kind == "str":
        return value
    if kind == "bool":
        return value.lower() in ("1", "true", "on", "yes", "enabled")
    if name == "gpu_layers" and value in ("auto", "all", "-1"):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"llama-server option for {name}: {value!r} is not a whole number") from None


@dataclass(frozen=True)
class _Context:
    """KV geometry as llama_context and llama_kv_cache(_iswa) size it."""

    n_seq: int
    n_streams: int  # 1 with a unified KV cache, else one per sequence
    n_ctx_seq: int  # cells per stream
    n_swa_cells: int  # cells per stream of the sliding-window cache
    n_ubatch: int

    @classmethod
    def of(cls, info: GGUFInfo, s: ServerSettings) -> _Context:
        n_seq = s.parallel if s.parallel > 0 else 4
        unified = s.kv_unified if s.parallel > 0 else True  # -np auto means 4 slots, unified
        n_ctx = s.ctx_size or (n_seq * s.kv_unified_per_slot) or info.context_length
        n_ctx = _pad(n_ctx)
        n_ctx_seq = n_ctx if unified else _pad(n_ctx // n_seq)
        n_ubatch = min(s.batch, n_ctx, s.ubatch)
        swa = _pad(min(n_ctx_seq, info.sliding_window * (n_seq if unified else 1) + n_ubatch))
        return cls(n_seq, 1 if unified else n_seq, n_ctx_seq, n_ctx_seq if s.swa_full else swa, n_ubatch)

    def cells_per_layer(self, info: GGUFInfo) -> list[int]:
        swa = set(info.swa_layers)
        cells = (self.n_swa_cells if il in swa else self.n_ctx_seq for il in range(info.block_count))
        return [c * self.n_streams for c in cells]


def _pad(n: int) -> int:
    return -(-n // _PAD) * _PAD


def _type_bytes(cache_type: str) -> float:
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[cache_type.upper()]]
    return size / block


def _kv_bytes_per_cell(info: GGUFInfo, layer: int, s: ServerSettings) -> int:
    heads = info.head_count_kv[layer]
    return round(heads * (info.key_length * _type_bytes(s.type_k) + info.value_length * _type_bytes(s.type_v)))


def _layer_devices(n_layer: int, gpu_layers: int | None, gpus: int) -> list[int]:
    """Device index (0 = CPU, i = gpu i-1) of each layer, and of the output layer at [n_layer].

    As llama.cpp: -ngl N offloads the output layer and the last N-1 repeating layers.
    """
    if gpus == 0:
        return [0] * (n_layer + 1)
    offloaded = n_layer + 1 if gpu_layers is None else min(max(gpu_layers, 0), n_layer + 1)
    first = n_layer + 1 - offloaded
    return [0 if il < first else 1 + (il - first) * gpus // offloaded for il in range(n_layer + 1)]


def _weights(info: GGUFInfo, device_of: list[int], names: list[str]) -> dict[str, int]:
    repacked = _REPACKED.get(platform.machine(), set())
    weights = dict.fromkeys(names, 0)
    for tensor in info.tensors:
        layer = layer_of(tensor.name)
        if layer is None:  # input embeddings stay on the CPU; output tensors follow the output layer
            layer = info.block_count if tensor.name.startswith("output") else -1
        device = names[device_of[layer]] if layer >= 0 else "cpu"
        weights[device] += tensor.n_bytes
        on_cpu_matmul = device == "cpu" and layer >= 0 and tensor.name.endswith(".weight")
        if on_cpu_matmul and tensor.ggml_type in repacked and tensor.rows % 8 == 0:
            weights[device] += tensor.n_bytes
    output_device = names[device_of[info.block_count]]
    tied = not any(tensor.name == "output.weight" for tensor in info.tensors)
    if tied and output_device != "cpu":  # llama.cpp copies the tied embeddings to the output's GPU
        weights[output_device] += sum(t.n_bytes for t in info.tensors if t.name == "token_embd.weight")
    return weights


def _compute(info: GGUFInfo, ctx: _Context, s: ServerSettings) -> int:
    per_token = (_ACTIVATION_FF * info.feed_forward_length + _ACTIVATION_EMBD * info.embedding_length) * 4
    n_kv = ctx.n_ctx_seq  # a ubatch attends within one stream
    if s.flash_attn_off:
        attention = n_kv * (info.head_count + 1) * 4  # f32 KQ scores per head, and the mask
    else:
        attention = (n_kv + (ctx.n_swa_cells if info.swa_layers else 0)) * 2  # f16 masks
    return ctx.n_ubatch * (per_token + attention)


def _runtime_caches(info: GGUFInfo, ctx: _Context, s: ServerSettings) -> int:
    """Host RAM that grows with use: the prompt cache, and SWA context checkpoints."""
    # -1 means no limit: planned as llama-server's default limit, as nothing better is known
    prompt_cache = (s.cache_ram_mib if s.cache_ram_mib >= 0 else ServerSettings.cache_ram_mib) * MIB
    if not info.swa_layers:
        return prompt_cache
    per_cell = sum(_kv_bytes_per_cell(info, il, s) for il in info.swa_layers)
    checkpoint = per_cell * min(info.sliding_window, ctx.n_swa_cells)  # one window of SWA cells
    return prompt_cache + ctx.n_seq * s.ctx_checkpoints * checkpoint
