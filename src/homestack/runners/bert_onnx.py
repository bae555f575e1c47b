"""A sentence-transformers BERT model (all-MiniLM-L6-v2) written as an ONNX graph for ONNX Runtime.

The graph is built with the `onnx` package straight from the model's safetensors
(no torch, no export): BERT's embeddings, its encoder layers in ONNX Runtime's fused
operators (multi-head attention, skip layer norm, bias GELU) and sentence-transformers'
pooling and L2 normalisation, so one ``session.run`` returns the finished vectors.

``weights`` picks the layers' matrices: ``float32`` as trained, or ``int8``, each
column scaled to its own largest value (ONNX Runtime's ``DynamicQuantizeMatMul``
quantises the activations per call, one scale per tensor). The int8 values stay within
7 bits: AVX2 has no VNNI, and its u8 x s8 multiply-add saturates 16-bit sums of two
full-range products. The feed-forward's second matrix stays float32 in both: its input
(the GELU's output) has an outlier channel (~24 where the others reach ~3), which a
per-tensor int8 scale flattens; quantised too, the vectors fell to cosine 0.98 to
sentence-transformers' on README text, against 0.991 with it float32. The activations'
scale is the whole batch's, so an int8 vector also moves a little with the texts it is
batched with (cosine 0.993 between a short text alone and among longer ones).

The written directory holds ``model.onnx`` and the tokenizer and sequence-length
files the runner reads beside it; it goes in ``DATA_DIR/converted/``, keyed by the
safetensors file's size and mtime and the weights, and a later start reuses it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .st_model import SEQUENCE_CONFIG, conversion_target, pooling_mode

WEIGHTS = ("int8", "float32")  # the first is the onnxruntime engine's
OPSET = 17  # LayerNormalization's first opset
IR_VERSION = 8  # opset 17's file format (a newer onnx package writes one ONNX Runtime may refuse)
_MS = "com.microsoft"  # ONNX Runtime's own operators
_INT8_MAX = 63  # 7 bits (see above)
_SIDE_FILES = ("tokenizer.json", SEQUENCE_CONFIG)  # what the runner reads beside the graph


class _Graph:
    """Nodes and initializers; each node's outputs are named after its position."""

    def __init__(self, int8: bool) -> None:
        self.int8 = int8
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def const(self, name: str, array: Any) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs: Any) -> Any:
        """The node's output name (a list of ``outputs`` names if more than one)."""
        from onnx import helper

        names = [f"{op_type}_{len(self.nodes)}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names if outputs > 1 else names[0]

    def matmul(self, x: str, name: str, weight: Any, int8: bool = True) -> str:
        """``x @ weight`` ([in, out]), int8 per output column when the graph and ``int8`` say so."""
        import numpy as np

        if not (self.int8 and int8):
            return self.op("MatMul", x, self.const(name, weight))
        scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / _INT8_MAX
        values = np.clip(np.round(weight / scale), -_INT8_MAX, _INT8_MAX).astype(np.int8)
        return self.op("DynamicQuantizeMatMul", x, self.const(name, values),
                       self.const(name + ".scale", scale.astype(np.float32)),
                       self.const(name + ".zero", np.zeros(weight.shape[1], dtype=np.int8)), domain=_MS)


def _layer(g: _Graph, w: dict[str, Any], p: str, x: str, mask: str, heads: int, eps: float) -> str:
    """One encoder layer (``p``: its weights' prefix), as transformers' BertLayer computes it."""
    import numpy as np

    def matmul(inp: str, name: str, int8: bool = True) -> str:  # torch's Linear: [out, in]; MatMul: [in, out]
        return g.matmul(inp, p + name, w[p + name + ".weight"].T.copy(), int8)

    def vector(name: str) -> str:
        return g.const(p + name, w[p + name])

    parts = [f"attention.self.{n}" for n in ("query", "key", "value")]
    qkv = g.matmul(x, p + "qkv", np.concatenate([w[p + n + ".weight"].T for n in parts], axis=1))
    sizes = g.const(p + "qkv.split", np.array([w[p + n + ".bias"].size for n in parts]))
    q, k, v = g.op("Split", qkv, sizes, outputs=3, axis=2)
    bias = g.const(p + "qkv.bias", np.concatenate([w[p + n + ".bias"] for n in parts]))
    context = g.op("MultiHeadAttention", q, k, v, bias, mask, domain=_MS, num_heads=heads)
    x = g.op("SkipLayerNormalization", matmul(context, "attention.output.dense"), x,
             vector("attention.output.LayerNorm.weight"), vector("attention.output.LayerNorm.bias"),
             vector("attention.output.dense.bias"), domain=_MS, epsilon=eps)
    # BiasGelu is the erf GELU (transformers' "gelu"), not the tanh approximation
    hidden = g.op("BiasGelu", matmul(x, "intermediate.dense"), vector("intermediate.dense.bias"), domain=_MS)
    return g.op("SkipLayerNormalization", matmul(hidden, "output.dense", int8=False), x, vector("output.LayerNorm.weight"),
                vector("output.LayerNorm.bias"), vector("output.dense.bias"), domain=_MS, epsilon=eps)


def _mean(g: _Graph, x: str, mask: str) -> str:
    """sentence-transformers' mean pooling: the unmasked tokens' sum over their count (at least 1e-9)."""
    import numpy as np

    weights = g.op("Unsqueeze", mask, g.const("pool.axis", np.array([2])))
    axis = g.const("pool.tokens", np.array([1]))
    total = g.op("ReduceSum", g.op("Mul", x, weights), axis, keepdims=0)
    count = g.op("ReduceSum", weights, axis, keepdims=0)
    return g.op("Div", total, g.op("Max", count, g.const("pool.eps", np.array(1e-9, dtype=np.float32))))


def _cls(g: _Graph, x: str, mask: str) -> str:
    import numpy as np

    return g.op("Gather", x, g.const("pool.first", np.array(0)), axis=1)


_POOLING = {"mean": _mean, "cls": _cls}


def build(model_dir: Path, weights: str) -> Any:
    """The ONNX model for the sentence-transformers BERT directory ``model_dir``: inputs ``input_ids``
    and ``attention_mask`` (int64, batch x tokens), output ``sentence_embedding`` (batch x hidden, pooled
    as the model's Pooling module says and L2-normalised)."""
    import numpy as np
    from onnx import TensorProto, helper
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ConfigError(f"{model_dir}: only BERT models convert to ONNX (model_type {config.get('model_type')!r})")
    pool = _POOLING[pooling_mode(model_dir)]
    w = {k.removeprefix("bert."): a.astype(np.float32) for k, a in load_file(str(model_dir / "model.safetensors")).items()}
    eps = config["layer_norm_eps"]
    g = _Graph(weights == "int8")
    # token_type_ids are all 0 for one text: that row of its table is folded into the positions'
    positions = g.const("embeddings.positions", w["embeddings.position_embeddings.weight"]
                        + w["embeddings.token_type_embeddings.weight"][0])
    length = g.op("Shape", "input_ids", start=1, end=2)
    x = g.op("Add", g.op("Gather", g.const("embeddings.words", w["embeddings.word_embeddings.weight"]), "input_ids"),
             g.op("Slice", positions, g.const("embeddings.start", np.array([0])), length))
    x = g.op("LayerNormalization", x, g.const("embeddings.norm.weight", w["embeddings.LayerNorm.weight"]),
             g.const("embeddings.norm.bias", w["embeddings.LayerNorm.bias"]), axis=-1, epsilon=eps)
    # the attention takes the 0/1 mask as int32: padding gets -10000 before the softmax, as in transformers
    padding = g.op("Cast", "attention_mask", to=TensorProto.INT32)
    for i in range(config["num_hidden_layers"]):
        x = _layer(g, w, f"encoder.layer.{i}.", x, padding, config["num_attention_heads"], eps)
    x = pool(g, x, g.op("Cast", "attention_mask", to=TensorProto.FLOAT))
    norm = g.op("ReduceL2", x, axes=[1], keepdims=1)
    g.op("Div", x, g.op("Max", norm, g.const("norm.eps", np.array(1e-12, dtype=np.float32))))
    g.nodes[-1].output[0] = "sentence_embedding"
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in ("input_ids", "attention_mask")]
    out = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", config["hidden_size"]])
    graph = helper.make_graph(g.nodes, model_dir.name, ids, [out], g.initializers)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(_MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="homestack", ir_version=IR_VERSION)


def write(model_dir: Path, out: Path, weights: str) -> Path:
    """The directory ``out``: the graph for ``model_dir`` (``weights``: int8 or float32) and the files the
    runner reads beside it; returns ``out``."""
    import onnx

    staged = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        onnx.save(build(model_dir, weights), str(staged / "model.onnx"))
        for name in _SIDE_FILES:
            if (model_dir / name).is_file():
                shutil.copy(model_dir / name, staged / name)
        try:
            os.replace(staged, out)
        except OSError:  # another process wrote it first
            if not (out / "model.onnx").is_file():
                raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


def converted(model_dir: Path, data_dir: Path, weights: str = WEIGHTS[0]) -> Path:
    """The ONNX directory for ``model_dir``, written on first use under ``data_dir``."""
    out = conversion_target(model_dir, data_dir, "ONNX", f"onnx-{weights}")
    if not (out / "model.onnx").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        write(model_dir, out, weights)
    return out
