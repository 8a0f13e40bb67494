"""A streamed chat completion: chunks as they arrive, the call's cost counted when it ends."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from . import costs
from .errors import APIConnectionError, MalformedResponseError
from .money import ZERO
from .response import ModelResponse


class CompletionStream(Iterator[ModelResponse]):
    """Iterate for the chunks (``chunk.choices[0].delta.content``). The call's cost is charged
    once, when the stream is exhausted or closed (``close()``, ``with``, or early ``break`` then
    garbage collection); ``text`` is what has arrived so far."""

    def __init__(
        self,
        reply: Any,
        model: str,
        messages: list[Mapping[str, Any]],
        charge: Callable[[Decimal], None],
        priced: bool = True,
    ) -> None:
        self.model = model
        self.chunks: list[ModelResponse] = []
        self.cost: float | None = None
        self._reply = reply
        self._messages = messages
        self._charge = charge
        self._priced = priced
        self._lines = reply.iter_lines(decode_unicode=True)
        self._lock = threading.Lock()
        self._done = False

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> ModelResponse:
        if self._done:
            raise StopIteration
        try:
            for line in self._lines:
                chunk = self._parse(line)
                if chunk is not None:
                    self.chunks.append(chunk)
                    return chunk
                if self._done:
                    break
        except OSError as exc:
            self.close()
            raise APIConnectionError(f"the stream from {self._reply.url} broke: {exc}") from exc
        except Exception:
            self.close()
            raise
        self.close()
        raise StopIteration

    def _parse(self, line: str | bytes | None) -> ModelResponse | None:
        if not line:
            return None
        text = line.decode() if isinstance(line, bytes) else line
        if not text.startswith("data:"):
            return None  # SSE comments, event names, keep-alives
        payload = text[5:].strip()
        if payload == "[DONE]":
            self._done = True
            return None
        try:
            data = json.loads(payload)
        except ValueError:
            raise MalformedResponseError(
                f"{self._reply.url} streamed a chunk that is not JSON: {payload[:200]!r}"
            ) from None
        if not isinstance(data, dict):
            raise MalformedResponseError(f"{self._reply.url} streamed a non-object chunk: {data!r}")
        return ModelResponse(data)

    @property
    def text(self) -> str:
        """The content received so far."""
        return "".join(
            choice.delta.content
            for chunk in self.chunks
            for choice in chunk.get("choices") or ()
            if isinstance(choice.get("delta"), Mapping)
            and isinstance(choice.delta.get("content"), str)
        )

    def close(self) -> None:
        """Stop reading and charge the call's cost (once)."""
        with self._lock:
            if self.cost is not None:
                return
            self._done = True
            self._reply.close()
            amount = (
                costs.response_cost(self.chunks, default_model=self.model, messages=self._messages)[
                    1
                ]
                if self._priced
                else ZERO
            )
            self._charge(amount)
            self.cost = float(amount)

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "cost", 0) is None:
            with contextlib.suppress(Exception):  # a finalizer must not raise
                self.close()
