"""The built-in embeddings runner: sentence-transformers or ONNX Runtime behind ``/v1/embeddings``.

It runs as its own child process so torch or ONNX Runtime never loads in the
gateway and the model unloads like any other runner. ``/health`` answers 503 while
the model loads, as llama-server does. ``--engine`` picks the encoder: each turns
texts into unit vectors and counts their tokens.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .st_model import BATCH

_state: dict[str, Any] = {"model": None, "error": None}
_encode_lock = threading.Lock()  # one encode at a time: each engine already uses every core


class _SentenceTransformers:
    def __init__(self, path: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device="cpu")

    def encode(self, texts: list[str]) -> tuple[Any, int]:
        vectors = self.model.encode(texts, batch_size=BATCH, convert_to_numpy=True, normalize_embeddings=True)
        return vectors, sum(len(ids) for ids in self.model.tokenizer(texts)["input_ids"])


def _onnxruntime(path: str) -> Any:
    from .onnx_encoder import OnnxEncoder

    return OnnxEncoder(path)


ENGINES = {"sentence-transformers": _SentenceTransformers, "onnxruntime": _onnxruntime}


def _load(engine: str, path: str) -> None:
    try:
        started = time.monotonic()
        _state["model"] = ENGINES[engine](path)
        print(f"embeddings: loaded {path} in {time.monotonic() - started:.1f} s", flush=True)
    except Exception as exc:  # reported on /health and in the log; the gateway shows the tail
        _state["error"] = f"{type(exc).__name__}: {exc}"
        print(f"embeddings: failed to load {path}: {_state['error']}", flush=True)
        os._exit(1)


def _error(message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _embed(name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return 400, _error("'input' must be a non-empty string or list of strings", "input")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        return 400, _error("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    with _encode_lock:
        vectors, tokens = _state["model"].encode(texts)
    data = []
    for i, vec in enumerate(vectors):
        emb: Any = base64.b64encode(vec.astype("<f4").tobytes()).decode() if fmt == "base64" else vec.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return 200, {"object": "list", "data": data, "model": name, "usage": usage}


def _handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm and
            # delayed ACKs hold the body back ~40 ms on a kept-alive connection.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                ready = _state["model"] is not None
                self._send(200 if ready else 503, {"status": "ok" if ready else "loading model"})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "homestack"}]})
            else:
                self._send(404, _error(f"no route {self.path}", code="not_found"))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path != "/v1/embeddings":
                self._send(404, _error(f"{name} is an embeddings model; only /v1/embeddings is served", code="not_found"))
                return
            if _state["model"] is None:
                self._send(503, _error("model is loading"))
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, _error("request body is not valid JSON"))
                return
            if not isinstance(body, dict):
                self._send(400, _error("request body must be a JSON object"))
                return
            self._send(*_embed(name, body))

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="homestack embeddings runner")
    parser.add_argument("--model", required=True, help="sentence-transformers model directory, or bert_onnx's")
    parser.add_argument("--engine", choices=sorted(ENGINES), default="sentence-transformers")
    parser.add_argument("--name", default="embeddings", help="model name to report")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), _handler(args.name))
    server.daemon_threads = True
    print(f"embeddings: listening on http://{args.host}:{args.port}, loading {args.model}", flush=True)
    threading.Thread(target=_load, args=(args.engine, args.model), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
