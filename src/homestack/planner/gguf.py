"""What the memory estimate (and the gateway) needs from a GGUF file, read from its header only.

``gguf.GGUFReader`` builds every array (262k token strings for Gemma) and takes
seconds; this walks the header with ``struct`` and skips big arrays, keeping
only their lengths. The result is cached as JSON by file identity.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ..errors import ConfigError

_MAGIC = b"GGUF"
_CACHE_FORMAT = 3
_SMALL_ARRAY = 4096  # numeric arrays up to this length are kept (per-layer values)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_TOKENS = "tokenizer.ggml.tokens"
# Fill-in-the-middle needs a prefix, a suffix and a middle token: set in the header, or found by
# their text as llama.cpp's vocabulary loader finds them (llama-vocab.cpp, across its versions).
_FIM_TOKENS = {
    "pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
            "<|code_prefix|>", "<|prefix|>"),
    "suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
            "<|code_suffix|>", "<|suffix|>"),
    "mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
            "<|code_middle|>", "<|middle|>"),
}
_FIM_KEYS = {"pre": "prefix", "suf": "suffix", "mid": "middle"}  # older GGUFs' tokenizer.ggml.<name>_token_id

# How llama.cpp lays out sliding-window layers when the GGUF has no per-layer
# sliding_window_pattern array (src/models/<arch>.cpp, load_swa_pattern):
# arch -> (pattern, dense_first, window used when the GGUF has none; 0 = the GGUF must say)
_SWA_RULES = {
    "gemma2": (2, False, 4096), "gemma3": (6, False, 0), "gemma3n": (5, False, 0),
    "cohere2": (4, False, 0), "cohere2moe": (4, True, 0), "llama4": (4, False, 8192),
    "gpt-oss": (2, False, 0), "exaone4": (4, False, 0), "exaone-moe": (4, False, 128),
    "olmo2": (4, False, 0), "afmoe": (4, False, 0), "smallthinker": (4, True, 0), "plamo3": (8, False, 0),
}


class Tensor(NamedTuple):
    name: str
    n_bytes: int
    ggml_type: str  # e.g. "Q4_K"
    rows: int  # ne[1]: CPU repacking needs it to be a multiple of 8


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    context_length: int  # n_ctx_train
    block_count: int
    embedding_length: int
    feed_forward_length: int  # the largest, when it varies by layer
    head_count: int
    head_count_kv: tuple[int, ...]  # per layer; 0 for layers without attention
    key_length: int
    value_length: int
    sliding_window: int  # 0 when the model has no sliding-window layers
    swa_layers: tuple[int, ...]  # indices of the layers that use the sliding window
    vocab_size: int
    tensors: tuple[Tensor, ...]
    fill_in_middle: bool = False  # its vocabulary has the tokens llama-server's /infill needs

    def layer_bytes(self) -> list[int]:
        """Weight bytes of each ``blk.N.`` layer."""
        per_layer = [0] * self.block_count
        for tensor in self.tensors:
            layer = layer_of(tensor.name)
            if layer is not None and layer < self.block_count:
                per_layer[layer] += tensor.n_bytes
        return per_layer


def layer_of(name: str) -> int | None:
    """N for a ``blk.N.`` tensor name, else None."""
    if not name.startswith("blk."):
        return None
    number = name.split(".", 2)[1]
    return int(number) if number.isdigit() else None


def read_gguf_info(path: Path, cache_dir: Path | None = None) -> GGUFInfo:
    """The header facts of ``path``; a second call for an unchanged file reads the JSON cache."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read GGUF file: {exc.strerror}") from None
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / "gguf" / f"{st.st_dev}-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}.json"
        cached = _load_cached(cache_file)
        if cached is not None:
            return cached
    info = _parse(path)
    if cache_file is not None:
        _store_cached(cache_file, info)
    return info


def _load_cached(cache_file: Path) -> GGUFInfo | None:
    try:
        data = json.loads(cache_file.read_text())
        if data.pop("format") != _CACHE_FORMAT:
            return None
        tuples = ("head_count_kv", "swa_layers")
        fields = {k: tuple(v) if k in tuples else v for k, v in data.items()}
        fields["tensors"] = tuple(Tensor(*tensor) for tensor in data["tensors"])
        return GGUFInfo(**fields)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store_cached(cache_file: Path, info: GGUFInfo) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"format": _CACHE_FORMAT, **asdict(info)}))
        os.replace(partial, cache_file)
    except OSError:
        pass  # a cache we cannot write only costs a re-parse next time


def _parse(path: Path) -> GGUFInfo:
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != _MAGIC:
                raise ConfigError(f"{path}: not a GGUF file (magic {bytes(buf[:4])!r})")
            version = _U32.unpack_from(buf, 4)[0]
            if version not in (2, 3):
                raise ConfigError(f"{path}: GGUF version {version} is not supported (2 or 3)")
            header = _Header(buf)
            meta, lengths, tensors = header.read()
            fim = _fill_in_middle(meta, buf[header.tokens[0]:header.tokens[1]])
        return _info(meta, lengths, tensors, fim)
    except ConfigError:
        raise
    except KeyError as exc:
        raise ConfigError(f"{path}: GGUF header lacks {exc.args[0]}") from None
    except (struct.error, IndexError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{path}: corrupt or truncated GGUF header ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read GGUF file: {exc.strerror or exc}") from None


class _Header:
    """A cursor over the header: key/value pairs, then tensor infos."""

    def __init__(self, buf: mmap.mmap):
        self.buf, self.pos = buf, 8
        self.tokens = (0, 0)  # where the token strings are

    def read(self) -> tuple[dict, dict[str, int], list[Tensor]]:
        n_tensors, n_kv = self._u64(), self._u64()
        meta, lengths = {}, {}
        for _ in range(n_kv):
            key, kind = self._string(), self._u32()
            if kind == _ARRAY:
                start = self.pos
                lengths[key], meta[key] = self._array()
                if key == _TOKENS:
                    self.tokens = (start, self.pos)
            else:
                meta[key] = self._value(kind)
        return meta, lengths, [self._tensor() for _ in range(n_tensors)]

    def _u32(self) -> int:
        self.pos += 4
        return _U32.unpack_from(self.buf, self.pos - 4)[0]

    def _u64(self) -> int:
        self.pos += 8
        return _U64.unpack_from(self.buf, self.pos - 8)[0]

    def _string(self) -> str:
        size = self._u64()
        self.pos += size
        return self.buf[self.pos - size : self.pos].decode("utf-8", errors="replace")

    def _value(self, kind: int):
        if kind == _STRING:
            return self._string()
        fmt = struct.Struct(_scalar_format(kind))
        self.pos += fmt.size
        return fmt.unpack_from(self.buf, self.pos - fmt.size)[0]

    def _array(self) -> tuple[int, list | None]:
        kind, count = self._u32(), self._u64()
        if kind == _STRING:
            self._skip_strings(count)
            return count, None
        if kind == _ARRAY:
            raise ValueError("nested arrays are not supported")
        fmt = _scalar_format(kind)
        size = struct.calcsize(fmt)
        start, self.pos = self.pos, self.pos + count * size
        if count > _SMALL_ARRAY:
            return count, None
        return count, list(struct.unpack_from(f"<{count}{fmt[1]}", self.buf, start))

    def _skip_strings(self, count: int) -> None:
        # the hot loop of the whole read: one unpack per token string
        unpack, buf, pos = _U64.unpack_from, self.buf, self.pos
        for _ in range(count):
            pos += 8 + unpack(buf, pos)[0]
        self.pos = pos

    def _tensor(self) -> Tensor:
        name, n_dims = self._string(), self._u32()
        dims = [self._u64() for _ in range(n_dims)]
        ggml_type = GGMLQuantizationType(self._u32())
        self._u64()  # offset into the data section
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        elements = 1
        for dim in dims:
            elements *= dim
        return Tensor(name, elements // block * type_size, ggml_type.name, dims[1] if n_dims > 1 else 1)


def _scalar_format(kind: int) -> str:
    if kind not in _SCALARS:
        raise ValueError(f"unknown value type {kind}")
    return _SCALARS[kind]


def _fill_in_middle(meta: dict, tokens: bytes) -> bool:
    """Whether the prefix, suffix and middle tokens are all there (by header key or by token text)."""
    def has(role: str) -> bool:
        if f"tokenizer.ggml.fim_{role}_token_id" in meta or f"tokenizer.ggml.{_FIM_KEYS[role]}_token_id" in meta:
            return True
        # Each token is stored as its length then its bytes: length and text together match one whole token.
        return any(_U64.pack(len(t)) + t in tokens for t in (text.encode() for text in _FIM_TOKENS[role]))

    return all(has(role) for role in _FIM_TOKENS)


def _info(meta: dict, lengths: dict[str, int], tensors: list[Tensor], fim: bool = False) -> GGUFInfo:
    arch = meta["general.architecture"]

    def key(name: str, default=None):
        value = meta.get(f"{arch}.{name}", default)
        if value is None:
            raise KeyError(f"{arch}.{name}")
        return value

    n_layer, n_embd = key("block_count"), key("embedding_length")
    head_count = _per_layer(key("attention.head_count"), n_layer)
    head_count_kv = _per_layer(key("attention.head_count_kv", head_count), n_layer)
    n_head = max(head_count)
    window, swa_layers = _sliding_window(arch, n_layer, meta)
    return GGUFInfo(
        architecture=arch,
        context_length=key("context_length"),
        block_count=n_layer,
        embedding_length=n_embd,
        feed_forward_length=max(_per_layer(key("feed_forward_length", 0), n_layer)),
        head_count=n_head,
        head_count_kv=tuple(head_count_kv),
        key_length=key("attention.key_length", n_embd // n_head),
        value_length=key("attention.value_length", n_embd // n_head),
        sliding_window=window,
        swa_layers=swa_layers,
        vocab_size=lengths.get("tokenizer.ggml.tokens") or key("vocab_size", 0),
        tensors=tuple(tensors),
        fill_in_middle=fim,
    )


def _per_layer(value, n_layer: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list) else [int(value)] * n_layer


def _sliding_window(arch: str, n_layer: int, meta: dict) -> tuple[int, tuple[int, ...]]:
    """(window, SWA layer indices) as llama.cpp decides them; (0, ()) without SWA."""
    rule_pattern, dense_first, default_window = _SWA_RULES.get(arch, (None, False, 0))
    window = meta.get(f"{arch}.attention.sliding_window")
    if window is None:
        window = default_window
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern", rule_pattern)
    if not window or pattern is None:
        return 0, ()
    if isinstance(pattern, list):  # one flag per layer: true = sliding window
        return int(window), tuple(il for il, swa in enumerate(pattern[:n_layer]) if swa)
    pattern = int(pattern)
    if dense_first:
        layers = [il for il in range(n_layer) if pattern == 0 or il % pattern != 0]
    else:
        layers = [il for il in range(n_layer) if pattern == 0 or il % pattern < pattern - 1]
    return int(window), tuple(layers)
