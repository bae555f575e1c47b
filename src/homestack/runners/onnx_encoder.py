"""Embeddings from the ONNX graph `bert_onnx.py` writes: the `tokenizers` package and ONNX Runtime, no torch.

It reproduces sentence-transformers' ``encode``: each input cut to the model's
``max_seq_length`` (its first tokens, [CLS] and [SEP] kept), inputs sorted by length
and run in batches so that few padding tokens are computed, vectors returned in the
caller's order. Pooling and normalisation are in the graph.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .st_model import max_tokens

# Inputs per session.run, after sorting by length (sentence-transformers' default batch too).
_BATCH = 32
_BERT_LONGEST = 512  # position embeddings of a BERT model, if its directory does not say


def _session_options(threads: int) -> Any:
    """``threads`` intra-op threads that sleep when idle: spinning ones steal the cores a shared
    machine's other processes (and our own other thread) wait for."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxEncoder:
    """The model in directory ``path`` (``model.onnx``, ``tokenizer.json``), on the cores this process may use."""

    def __init__(self, path: str) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        directory = Path(path)
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_truncation()  # usage counts every token; the cut is ours (below)
        self.tokenizer.no_padding()
        self.longest = max_tokens(directory, _BERT_LONGEST)
        self.session = onnxruntime.InferenceSession(str(directory / "model.onnx"),
                                                    _session_options(len(os.sched_getaffinity(0))),
                                                    providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]) -> tuple[Any, int]:
        """Unit vectors (a float32 array, one row per text) and the texts' token count before the cut."""
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        tokens = sum(len(e.ids) for e in encodings)
        # BERT's template is [CLS] text [SEP]: keep the text's first tokens and the closing [SEP]
        ids = [e.ids if len(e.ids) <= self.longest else e.ids[:self.longest - 1] + e.ids[-1:] for e in encodings]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        vectors: Any = None
        for start in range(0, len(order), _BATCH):
            rows = order[start:start + _BATCH]
            batch = np.zeros((len(rows), len(ids[rows[-1]])), dtype=np.int64)
            mask = np.zeros_like(batch)
            for row, i in enumerate(rows):
                batch[row, :len(ids[i])] = ids[i]
                mask[row, :len(ids[i])] = 1
            out = self.session.run(["sentence_embedding"], {"input_ids": batch, "attention_mask": mask})[0]
            if vectors is None:
                vectors = np.empty((len(texts), out.shape[1]), dtype=np.float32)
            vectors[rows] = out
        return vectors, tokens
