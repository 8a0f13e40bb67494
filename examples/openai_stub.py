"""A small provider server for loopback use (examples and tests): OpenAI chat completions, the
OpenAI Responses API and Anthropic Messages, each in its own wire format.

    python examples/openai_stub.py [--port 0]

prints ``http://127.0.0.1:PORT/v1`` and serves ``POST /v1/chat/completions``, ``POST
/v1/responses`` and ``POST /v1/messages`` (each also without ``/v1``; an Anthropic client takes
``base_url=http://127.0.0.1:PORT``): a fixed reply, cut at the request's output limit
(``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``), with usage counted by
tiktoken as the provider would report it. Request headers steer it for tests: ``X-Stub-Status:
503`` answers that status, ``X-Stub-Delay: 2.5`` waits, ``X-Stub-Body: garbage`` answers a
non-JSON body, ``X-Stub-Usage: none`` omits usage, ``X-Stub-Model: name`` reports another model,
``X-Stub-Cached: N`` / ``X-Stub-Cache-Write: N`` report N of the prompt's tokens as read from /
written to the prompt cache, ``X-Stub-Reasoning: N`` adds N reasoning (thinking) tokens to the
output. ``"stream": true`` streams the reply as server-sent events: chat chunks (with a final usage
chunk when ``stream_options.include_usage`` asks for one), Responses events ending with
``response.completed`` carrying usage, or Anthropic's ``message_start`` ... ``message_stop``.
``GET /stats`` tells how many requests it served.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from budget_manager import token_counter
from budget_manager.integrations.sdk_prompts import anthropic_prompt, responses_prompt

REPLY = (
    "Hello! I'm doing well, thank you for asking. This answer comes from a local test server, "
    "so no real model was called and no real money was spent."
)
ROUTES = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/responses": "responses",
    "/responses": "responses",
    "/v1/messages": "messages",
    "/messages": "messages",
}
LIMITS = {
    "chat": ("max_completion_tokens", "max_tokens"),
    "responses": ("max_output_tokens",),
    "messages": ("max_tokens",),
}


class Tokens:
    """What one request is billed: its prompt split by cache, and its output (reasoning
    included); ``text`` is the visible reply, cut at the output limit."""

    def __init__(self, kind: str, model: str, request: dict[str, Any], headers: Any) -> None:
        prompt_messages = {
            "chat": lambda: request["messages"],
            "responses": lambda: responses_prompt(request),
            "messages": lambda: anthropic_prompt(request),
        }[kind]()
        self.prompt = token_counter(model=model, messages=prompt_messages)
        self.cached = min(int(headers.get("X-Stub-Cached") or 0), self.prompt)
        self.written = min(int(headers.get("X-Stub-Cache-Write") or 0), self.prompt - self.cached)
        limit = next((request[k] for k in LIMITS[kind] if request.get(k) is not None), None)
        self.reasoning = int(headers.get("X-Stub-Reasoning") or 0)
        if limit is not None:
            self.reasoning = min(self.reasoning, limit)
        self.text, self.cut = _cut(model, None if limit is None else limit - self.reasoning)
        self.output = token_counter(model=model, text=self.text) + self.reasoning


def _cut(model: str, limit: int | None) -> tuple[str, bool]:
    """The reply cut to at most ``limit`` tokens (whole words), and whether it was cut."""
    if limit is None or token_counter(model=model, text=REPLY) <= limit:
        return REPLY, False
    words = REPLY.split(" ")
    kept = 0
    while (
        kept < len(words) and token_counter(model=model, text=" ".join(words[: kept + 1])) <= limit
    ):
        kept += 1
    return " ".join(words[:kept]), True


def _pieces(text: str) -> Iterator[str]:
    for index, word in enumerate(text.split(" ") if text else []):
        yield word if index == 0 else " " + word


class _Handler(BaseHTTPRequestHandler):
    server: StubServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else a keep-alive reply waits ~40 ms for a delayed ACK

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
        kind = ROUTES.get(self.path.split("?")[0].rstrip("/"))
        if kind is None:
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        with self.server.lock:
            self.server.requests += 1
            number = self.server.requests
        delay = float(self.headers.get("X-Stub-Delay") or 0)
        if delay:
            time.sleep(delay)
        status = int(self.headers.get("X-Stub-Status") or 200)
        if status >= 400:
            error = {"message": f"stub error {status}", "type": "stub"}
            if kind == "messages":
                self._json(status, {"type": "error", "error": {**error, "type": "api_error"}})
            else:
                self._json(status, {"error": error})
            return
        if self.headers.get("X-Stub-Body") == "garbage":
            self._send(200, b"<html>not json</html>", "text/html")
            return
        try:
            request = json.loads(raw)
            model = request["model"]
            tokens = Tokens(kind, model, request, self.headers)
        except (ValueError, KeyError, TypeError):
            what = {"chat": "messages", "responses": "input", "messages": "messages"}[kind]
            self._json(400, {"error": {"message": f"body must be JSON with model and {what}"}})
            return
        reported = self.headers.get("X-Stub-Model") or model
        report = self.headers.get("X-Stub-Usage") != "none"
        {"chat": self._chat, "responses": self._responses, "messages": self._messages}[kind](
            request, reported, tokens, report, number
        )

    # -- OpenAI chat completions -------------------------------------------------------------
    def _chat(
        self, request: dict[str, Any], model: str, tokens: Tokens, report: bool, number: int
    ) -> None:
        finish = "length" if tokens.cut else "stop"
        reply: dict[str, Any] = {
            "id": f"chatcmpl-stub-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": tokens.text},
                    "finish_reason": finish,
                }
            ],
        }
        usage: dict[str, Any] | None = None
        if report:
            usage = {
                "prompt_tokens": tokens.prompt,
                "completion_tokens": tokens.output,
                "total_tokens": tokens.prompt + tokens.output,
            }
            if tokens.cached or tokens.written:
                usage["prompt_tokens_details"] = {
                    "cached_tokens": tokens.cached,
                    "cache_write_tokens": tokens.written,
                }
            if tokens.reasoning:
                usage["completion_tokens_details"] = {"reasoning_tokens": tokens.reasoning}
        if request.get("stream"):
            wants_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            self._chat_stream(reply, tokens.text, finish, usage if wants_usage else None)
            return
        if usage is not None:
            reply["usage"] = usage
        self._json(200, reply)

    def _start_events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _event(self, data: Any, name: str | None = None) -> None:
        head = f"event: {name}\n" if name else ""
        self.wfile.write(f"{head}data: {json.dumps(data)}\n\n".encode())

    def _chat_stream(
        self, reply: dict[str, Any], text: str, finish: str, usage: dict[str, Any] | None
    ) -> None:
        self._start_events()
        base = {key: reply[key] for key in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        for piece in _pieces(text):
            self._event({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
        self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if usage is not None:
            self._event({**base, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # -- OpenAI Responses API ----------------------------------------------------------------
    def _responses(
        self, request: dict[str, Any], model: str, tokens: Tokens, report: bool, number: int
    ) -> None:
        message_id = f"msg_stub_{number}"
        part = {"type": "output_text", "text": tokens.text, "annotations": [], "logprobs": []}
        item = {
            "type": "message",
            "id": message_id,
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        response: dict[str, Any] = {
            "id": f"resp_stub_{number}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "incomplete" if tokens.cut else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if tokens.cut else None,
            "model": model,
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "instructions": request.get("instructions"),
            "metadata": request.get("metadata") or {},
            "max_output_tokens": request.get("max_output_tokens"),
            "temperature": 1.0,
            "top_p": 1.0,
            "usage": None,
        }
        if report:
            response["usage"] = {
                "input_tokens": tokens.prompt,
                "input_tokens_details": {"cached_tokens": tokens.cached},
                "output_tokens": tokens.output,
                "output_tokens_details": {"reasoning_tokens": tokens.reasoning},
                "total_tokens": tokens.prompt + tokens.output,
            }
            if tokens.written:
                response["usage"]["input_tokens_details"]["cache_write_tokens"] = tokens.written
        if not request.get("stream"):
            self._json(200, response)
            return
        self._start_events()
        sequence = iter(range(1_000_000))

        def event(name: str, **data: Any) -> None:
            self._event({"type": name, "sequence_number": next(sequence), **data}, name)

        started = {**response, "status": "in_progress", "output": [], "usage": None}
        event("response.created", response=started)
        event("response.in_progress", response=started)
        opened = {**item, "status": "in_progress", "content": []}
        event("response.output_item.added", output_index=0, item=opened)
        place = {"item_id": message_id, "output_index": 0, "content_index": 0}
        event("response.content_part.added", **place, part={**part, "text": ""})
        for piece in _pieces(tokens.text):
            event("response.output_text.delta", **place, delta=piece, logprobs=[])
        event("response.output_text.done", **place, text=tokens.text, logprobs=[])
        event("response.content_part.done", **place, part=part)
        event("response.output_item.done", output_index=0, item=item)
        event("response.incomplete" if tokens.cut else "response.completed", response=response)
        self.wfile.flush()

    # -- Anthropic Messages ------------------------------------------------------------------
    def _messages(
        self, request: dict[str, Any], model: str, tokens: Tokens, report: bool, number: int
    ) -> None:
        stop = "max_tokens" if tokens.cut else "end_turn"
        usage: dict[str, Any] = {
            # Anthropic's input_tokens leaves out the tokens read from or written to the cache.
            "input_tokens": tokens.prompt - tokens.cached - tokens.written,
            "cache_read_input_tokens": tokens.cached,
            "cache_creation_input_tokens": tokens.written,
            "output_tokens": tokens.output,
        }
        if tokens.reasoning:  # thinking, inside output_tokens
            usage["output_tokens_details"] = {"thinking_tokens": tokens.reasoning}
        message: dict[str, Any] = {
            "id": f"msg_stub_{number}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": tokens.text}],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage if report else None,
        }
        if not request.get("stream"):
            self._json(200, message)
            return
        self._start_events()
        start_usage = {**usage, "output_tokens": 1} if report else None
        self._event(
            {
                "type": "message_start",
                "message": {**message, "content": [], "stop_reason": None, "usage": start_usage},
            },
            "message_start",
        )
        self._event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        )
        self._event({"type": "ping"}, "ping")
        for piece in _pieces(tokens.text):
            delta = {"type": "text_delta", "text": piece}
            self._event(
                {"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"
            )
        self._event({"type": "content_block_stop", "index": 0}, "content_block_stop")
        end: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
        }
        if report:
            end["usage"] = {"output_tokens": tokens.output}
            if tokens.reasoning:
                end["usage"]["output_tokens_details"] = usage["output_tokens_details"]
        self._event(end, "message_delta")
        self._event({"type": "message_stop"}, "message_stop")
        self.wfile.flush()


class StubServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients connect at once (asyncio tests)

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.requests = 0
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        # A client that closes a stream early is no error of the server's.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

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
