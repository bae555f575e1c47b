"""Embeddings from the ONNX graph `bert_onnx.py` writes: the `tokenizers` package and ONNX Runtime, no torch.

It reproduces sentence-transformers' ``encode``: each input cut to the model's
``max_seq_length`` (its first tokens, [CLS] and [SEP] kept), inputs sorted by length
and run in batches so that few padding tokens are computed, vectors returned in the
caller's order. Pooling and normalisation are in the graph.

Beside an int8 graph lies a float32 one (``exact.onnx``): texts of at most
``_EXACT_LENGTH`` tokens run there, so a search's query gets sentence-transformers' own
vector. Short texts are where int8 strays furthest ([CLS] and [SEP] weigh most; a
2-character chunk fell to cosine 0.981 where 200-token ones stayed above 0.992), cost
little in float32, and are rare among an ingest's chunks, where int8 pays off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .bert_onnx import EXACT
from .st_model import BATCH, max_tokens

_BERT_LONGEST = 512  # position embeddings of a BERT model, if its directory does not say
_EXACT_LENGTH = 32  # tokens, [CLS] and [SEP] included


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
        options = _session_options(len(os.sched_getaffinity(0)))
        self.session, self.exact = (
            onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            if path.is_file() else None for path in (directory / "model.onnx", directory / EXACT))

    def encode(self, texts: list[str]) -> tuple[Any, int]:
        """Unit vectors (a float32 array, one row per text) and the texts' token count before the cut."""
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        tokens = sum(len(e.ids) for e in encodings)
        # BERT's template is [CLS] text [SEP]: keep the text's first tokens and the closing [SEP]
        ids = [e.ids if len(e.ids) <= self.longest else e.ids[:self.longest - 1] + e.ids[-1:] for e in encodings]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        vectors: Any = None
        start = 0
        while start < len(order):
            rows = order[start:start + BATCH]
            exact = self.exact is not None and len(ids[rows[0]]) <= _EXACT_LENGTH
            if exact:
                rows = [i for i in rows if len(ids[i]) <= _EXACT_LENGTH]  # the rest start the next batch
            start += len(rows)
            batch = np.zeros((len(rows), len(ids[rows[-1]])), dtype=np.int64)
            mask = np.zeros_like(batch)
            for row, i in enumerate(rows):
                batch[row, :len(ids[i])] = ids[i]
                mask[row, :len(ids[i])] = 1
            session = self.exact if exact else self.session
            out = session.run(["sentence_embedding"], {"input_ids": batch, "attention_mask": mask})[0]
            if vectors is None:
                vectors = np.empty((len(texts), out.shape[1]), dtype=np.float32)
            vectors[rows] = out
        return vectors, tokens
