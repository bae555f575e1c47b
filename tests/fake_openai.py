"""A tiny OpenAI-compatible upstream for tests of the remote and command runners.

It answers every chat completion with a fixed reply, streamed or not, after
``fake_sleep`` seconds if the request says so; ``GET /stats`` tells the most
requests it served at once.
Run: python tests/fake_openai.py --port PORT [--startup-delay SECONDS] [--stop-delay SECONDS] [--tag TAG]
[--api-key KEY] [--fail-status STATUS]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = "hello from fake"
_inflight = {"now": 0, "max": 0}
_lock = threading.Lock()
FAIL_STATUS = 0  # --fail-status: every POST answers this status


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and
        # delayed ACKs hold the body back ~40 ms on a kept-alive connection.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def _json(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        elif self.path == "/stats":
            self._json(200, {"max_inflight": _inflight["max"]})
        else:
            self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with _lock:
            _inflight["now"] += 1
            _inflight["max"] = max(_inflight["max"], _inflight["now"])
        try:
            time.sleep(body.get("fake_sleep", 0))  # to test timeouts and concurrency limits
            self._answer(body)
        finally:
            with _lock:
                _inflight["now"] -= 1

    def _answer(self, body):
        auth = self.headers.get("Authorization")
        if FAIL_STATUS:  # a runner that is overloaded or broken
            self._json(FAIL_STATUS, {"error": {"message": f"failing with {FAIL_STATUS}", "type": "server_error"}})
            return
        if body.get("fake_reject"):  # as some APIs do: the refused key, echoed in the error
            self._json(401, {"error": {"message": f"Incorrect API key provided: {auth}", "type": "invalid_request_error"}})
            return
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if not body.get("stream"):
            self._json(200, {
                "id": "x", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
                "usage": usage, "seen_authorization": auth,
            })
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        events = []
        for word in REPLY.split(" "):
            chunk = {"id": "x", "object": "chat.completion.chunk", "model": body.get("model"),
                     "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
            events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            final = {"id": "x", "object": "chat.completion.chunk", "choices": [], "usage": usage}
            events.append(b"data: " + json.dumps(final).encode() + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        # fake_split: write in 5-byte pieces, as a runner whose writes do not follow events might.
        step = 5 if body.get("fake_split") else 1 << 20
        for piece in (data[i:i + step] for data in events for i in range(0, len(data), step)):
            self.wfile.write(piece)
            self.wfile.flush()
            if body.get("fake_split"):
                time.sleep(0.001)
        self.close_connection = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--startup-delay", type=float, default=0, help="seconds before listening (a slow load)")
    parser.add_argument("--tag", help="ignored; lets a test find this process")
    parser.add_argument("--api-key", help="ignored; a secret on the command line, as real servers take one")
    parser.add_argument("--stop-delay", type=float, default=0, help="seconds between SIGTERM and exiting")
    parser.add_argument("--fail-status", type=int, default=0, help="answer every POST with this HTTP status")
    args = parser.parse_args()
    global FAIL_STATUS
    FAIL_STATUS = args.fail_status
    if args.stop_delay:
        signal.signal(signal.SIGTERM, lambda *_: (time.sleep(args.stop_delay), os._exit(0)))
    time.sleep(args.startup_delay)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
