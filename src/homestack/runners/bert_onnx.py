"""A sentence-transformers BERT model (all-MiniLM-L6-v2) written as an ONNX graph for ONNX Runtime.

The graph is built with the `onnx` package straight from the model's safetensors
(no torch, no export): BERT's embeddings, its encoder layers with ONNX Runtime's own
attention and bias-GELU operators, and sentence-transformers' pooling and L2
normalisation, so one ``session.run`` returns the finished vectors. Each residual
add and layer norm is the standard ``Add`` and ``LayerNormalization``: ONNX Runtime's
fused ``SkipLayerNormalization`` took 2.5 times as long on this CPU (263 ms against
107 ms of a 1.7 s profile).

``weights`` picks the layers' matrices: ``float32`` as trained, or ``int8``, each
column scaled to its own largest value (ONNX Runtime quantises the activations per
call, one scale per tensor: ``QAttention`` for the query/key/value product,
``DynamicQuantizeMatMul`` for the others). The int8 values stay within 7 bits: AVX2
has no VNNI, and its u8 x s8 multiply-add saturates 16-bit sums of two full-range
products. The feed-forward's second matrix takes the GELU's output, where one or two
channels per layer reach ~24 while the rest stay near 3, and a per-tensor scale would
flatten the rest (cosine 0.987 to sentence-transformers' vectors): the ``_OUTLIERS``
channels per layer that run largest on a few calibration sentences (through the
float32 graph, when the int8 one is written) keep a small float32 product of their
own, and the int8 product sees them as zero. (SmoothQuant's rescaling of every
channel did worse here: 0.968.) The activations' scale is the whole batch's, so an
int8 vector also moves a little with the texts it is batched with.

The written directory holds ``model.onnx`` and the tokenizer and sequence-length
files the runner reads beside it; it goes in ``DATA_DIR/converted/``, keyed by the
safetensors file's size and mtime, the graph's version and the weights, and a later
start reuses it.
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
GRAPH_VERSION = 2  # in the converted directory's name: a new graph is written, not an old one reused
OPSET = 17  # LayerNormalization's first opset
IR_VERSION = 8  # opset 17's file format (a newer onnx package writes one ONNX Runtime may refuse)
_MS = "com.microsoft"  # ONNX Runtime's own operators
_INT8_MAX = 63  # 7 bits (see above)
_SIDE_FILES = ("tokenizer.json", SEQUENCE_CONFIG)  # what the runner reads beside the graph
_OUTLIERS = 8  # per layer; cosine on the benchmark's 512 chunks: mean 0.9962 with 8, 0.9969 with all 1,536
EXACT = "exact.onnx"  # the float32 graph written beside an int8 one
# What the outlier channels are found on: the channels that run large do so on any English text.
_CALIBRATION = [
    "fork() creates a new process by duplicating the calling process.",
    "The Zephyr arm needs a maintenance service every 450 hours of operation.",
    "How do I open a file for appending and create it if it does not exist?",
    "Returns the number of bytes read, or -1 on error, and sets errno to indicate the error.",
    "The committee met on Tuesday to discuss the budget for next year's festival in the old town.",
    "SYNOPSIS: tar [-] A --catenate --concatenate | c --create | d --diff ... [options] [pathname ...]",
    "Mix the flour and butter, then add water slowly until the dough holds together.",
    "Is it safe to call malloc from a signal handler? No: it is not async-signal-safe.",
]


class _Graph:
    """Nodes and initializers; each node's outputs are named after its position. ``outliers``: per layer, the
    GELU output's channels kept float32 (int8 only); ``probes``: the GELU outputs, which calibration reads."""

    def __init__(self, int8: bool, outliers: list[Any] | None = None) -> None:
        self.int8 = int8
        self.outliers = outliers
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.probes: list[str] = []

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

    def int8_weight(self, name: str, weight: Any) -> tuple[str, str, str]:
        """``weight`` ([in, out]) as 7-bit int8 per output column: its values', scales' and zero points' names."""
        import numpy as np

        scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / _INT8_MAX
        values = np.clip(np.round(weight / scale), -_INT8_MAX, _INT8_MAX).astype(np.int8)
        return (self.const(name, values), self.const(name + ".scale", scale.astype(np.float32)),
                self.const(name + ".zero", np.zeros(weight.shape[1], dtype=np.int8)))

    def matmul(self, x: str, name: str, weight: Any) -> str:
        """``x @ weight`` ([in, out]), int8 when the graph is."""
        if not self.int8:
            return self.op("MatMul", x, self.const(name, weight))
        return self.op("DynamicQuantizeMatMul", x, *self.int8_weight(name, weight), domain=_MS)


def _add_norm(g: _Graph, x: str, bias: str, residual: str, gamma: str, beta: str, eps: float) -> str:
    return g.op("LayerNormalization", g.op("Add", g.op("Add", x, bias), residual), gamma, beta, axis=-1, epsilon=eps)


def _layer(g: _Graph, w: dict[str, Any], index: int, x: str, mask: str, heads: int, eps: float) -> str:
    """Encoder layer ``index``, as transformers' BertLayer computes it."""
    import numpy as np

    p = f"encoder.layer.{index}."

    def weight(name: str) -> Any:  # torch's Linear: [out, in]; MatMul: [in, out]
        return w[p + name + ".weight"].T

    def vector(name: str) -> str:
        return g.const(p + name, w[p + name])

    parts = [f"attention.self.{n}" for n in ("query", "key", "value")]
    qkv = np.concatenate([weight(n) for n in parts], axis=1)
    bias = g.const(p + "qkv.bias", np.concatenate([w[p + n + ".bias"] for n in parts]))
    if g.int8:
        xq, xscale, xzero = g.op("DynamicQuantizeLinear", x, outputs=3)
        values, scale, zero = g.int8_weight(p + "qkv", qkv)
        context = g.op("QAttention", xq, values, bias, xscale, scale, mask, xzero, zero, domain=_MS, num_heads=heads)
    else:
        context = g.op("Attention", x, g.const(p + "qkv", qkv), bias, mask, domain=_MS, num_heads=heads)
    x = _add_norm(g, g.matmul(context, p + "attention.output.dense", weight("attention.output.dense").copy()),
                  vector("attention.output.dense.bias"), x, vector("attention.output.LayerNorm.weight"),
                  vector("attention.output.LayerNorm.bias"), eps)
    # BiasGelu is the erf GELU (transformers' "gelu"), not the tanh approximation
    hidden = g.op("BiasGelu", g.matmul(x, p + "intermediate.dense", weight("intermediate.dense").copy()),
                  vector("intermediate.dense.bias"), domain=_MS)
    g.probes.append(hidden)
    down = weight("output.dense").copy()
    if g.outliers is None:
        out = g.matmul(hidden, p + "output.dense", down)
    else:  # the outlier channels' share in float32, the rest's (those channels zeroed) in int8
        channels = g.outliers[index]
        keep = np.ones(down.shape[0], dtype=np.float32)
        keep[channels] = 0
        outlying = g.op("Gather", hidden, g.const(p + "output.outliers", channels.astype(np.int64)), axis=2)
        out = g.op("Add", g.matmul(g.op("Mul", hidden, g.const(p + "output.keep", keep)), p + "output.dense",
                                   down * keep[:, None]),
                   g.op("MatMul", outlying, g.const(p + "output.dense.outliers", down[channels])))
    return _add_norm(g, out, vector("output.dense.bias"), x, vector("output.LayerNorm.weight"),
                     vector("output.LayerNorm.bias"), eps)


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


def build(model_dir: Path, weights: str) -> dict[str, Any]:
    """The ONNX models for the sentence-transformers BERT directory ``model_dir`` by file name:
    ``model.onnx`` with ``weights``, and beside an int8 one ``exact.onnx`` (float32) for the few texts a
    query sends, whose vectors are then sentence-transformers' own. Inputs ``input_ids`` and
    ``attention_mask`` (int64, batch x tokens), output ``sentence_embedding`` (batch x hidden, pooled as
    the model's Pooling module says and L2-normalised)."""
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ConfigError(f"{model_dir}: only BERT models convert to ONNX (model_type {config.get('model_type')!r})")
    w = {k.removeprefix("bert."): a.astype(np.float32) for k, a in load_file(str(model_dir / "model.safetensors")).items()}
    plain = _Graph(False)
    exact = _graph(model_dir, config, w, plain)
    if weights != "int8":
        return {"model.onnx": exact}
    outliers = _outliers(model_dir, exact, plain.probes, config["intermediate_size"])
    return {"model.onnx": _graph(model_dir, config, w, _Graph(True, outliers)), EXACT: exact}


def _outliers(model_dir: Path, exact: Any, probes: list[str], channels: int) -> list[Any]:
    """Per layer, the _OUTLIERS channels of the GELU's output that run largest on the calibration
    sentences, read from the float32 graph ``exact`` (its GELU outputs are ``probes``)."""
    import numpy as np
    import onnxruntime
    from onnx import TensorProto, helper
    from tokenizers import Tokenizer

    probed = type(exact)()
    probed.CopyFrom(exact)
    probed.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in probes)
    session = onnxruntime.InferenceSession(probed.SerializeToString(), providers=["CPUExecutionProvider"])
    peaks = [np.zeros(channels, dtype=np.float32) for _ in probes]
    for encoding in Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode_batch(_CALIBRATION):
        ids = np.array([encoding.ids], dtype=np.int64)  # one at a time: no padding among the maxima
        for peak, out in zip(peaks, session.run(probes, {"input_ids": ids, "attention_mask": np.ones_like(ids)})):
            np.maximum(peak, np.abs(out).reshape(-1, channels).max(axis=0), out=peak)
    return [np.sort(np.argsort(peak)[-_OUTLIERS:]) for peak in peaks]


def _graph(model_dir: Path, config: dict, w: dict[str, Any], g: _Graph) -> Any:
    """The model (as ``build`` says) built into ``g`` with its settings."""
    import numpy as np
    from onnx import TensorProto, helper

    pool = _POOLING[pooling_mode(model_dir)]
    eps = config["layer_norm_eps"]
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
        x = _layer(g, w, i, x, padding, config["num_attention_heads"], eps)
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
        for name, model in build(model_dir, weights).items():
            onnx.save(model, str(staged / name))
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
    out = conversion_target(model_dir, data_dir, "ONNX", f"v{GRAPH_VERSION}-onnx-{weights}")
    if not (out / "model.onnx").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        write(model_dir, out, weights)
    return out
