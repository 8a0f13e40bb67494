"""A small OpenAI-compatible chat-completions server for loopback use (examples and tests).

    python examples/openai_stub.py [--port 0]

prints ``http://127.0.0.1:PORT/v1`` and serves ``POST /v1/chat/completions`` (and without
``/v1``): a fixed reply, with usage counted by tiktoken as OpenAI would report it. Request headers
steer it for tests: ``X-Stub-Status: 503`` answers that status, ``X-Stub-Delay: 2.5`` waits,
``X-Stub-Body: garbage`` answers a non-JSON body, ``X-Stub-Usage: none`` omits usage,
``X-Stub-Model: name`` reports another model. ``"stream": true`` streams the reply as server-sent
events, with a final usage chunk when ``stream_options.include_usage`` asks for one.
``GET /stats`` tells how many completions it served.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from budget_manager import token_counter

REPLY = (
    "Hello! I'm doing well, thank you for asking. This answer comes from a local test server, "
    "so no real model was called and no real money was spent."
)


class _Handler(BaseHTTPRequestHandler):
    server: StubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode())

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/stats":
            self._json(200, {"requests": self.server.requests})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        with self.server.lock:
            self.server.requests += 1
        delay = float(self.headers.get("X-Stub-Delay") or 0)
        if delay:
            time.sleep(delay)
        status = int(self.headers.get("X-Stub-Status") or 200)
        if status >= 400:
            self._json(status, {"error": {"message": f"stub error {status}", "type": "stub"}})
            return
        if self.headers.get("X-Stub-Body") == "garbage":
            self._send(200, b"<html>not json</html>", "text/html")
            return
        try:
            request = json.loads(raw)
            model, messages = request["model"], request["messages"]
        except (ValueError, KeyError, TypeError):
            self._json(400, {"error": {"message": "body must be JSON with model and messages"}})
            return
        reply: dict[str, Any] = {
            "id": f"chatcmpl-stub-{self.server.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.headers.get("X-Stub-Model") or model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY},
                    "finish_reason": "stop",
                }
            ],
        }
        usage = None
        if self.headers.get("X-Stub-Usage") != "none":
            prompt = token_counter(model=model, messages=messages)
            completion = token_counter(model=model, text=REPLY)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        if request.get("stream"):
            wants_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            self._stream(reply, usage if wants_usage else None)
            return
        if usage is not None:
            reply["usage"] = usage
        self._json(200, reply)

    def _stream(self, reply: dict[str, Any], usage: dict[str, int] | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {key: reply[key] for key in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        words = REPLY.split(" ")
        for index, word in enumerate(words):
            piece = word if index == 0 else " " + word
            chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(end)}\n\n".encode())
        if usage is not None:
            final = {**base, "choices": [], "usage": usage}
            self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class StubServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients connect at once (asyncio tests)

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.requests = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def start_in_thread(port: int = 0) -> StubServer:
    """Start a stub server in a daemon thread; its base URL is ``server.url``."""
    server = StubServer(port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = StubServer(args.port)
    print(server.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
