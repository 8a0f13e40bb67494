"""A streamed chat completion: chunks as they arrive, the call's cost counted when it ends;
:class:`CompletionStream` for ``completion()``, :class:`AsyncCompletionStream` for
``acompletion()``."""

from __future__ import annotations

import contextlib
import inspect
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from . import costs
from .costs.usage import Usage
from .errors import APIConnectionError, MalformedResponseError
from .money import ZERO
from .response import ModelResponse


class _Chunks:
    """The chunks of one stream so far, read from its server-sent events, and its cost."""

    def __init__(
        self, url: str, model: str, messages: list[Mapping[str, Any]], priced: bool
    ) -> None:
        self.model = model
        self.chunks: list[ModelResponse] = []
        #: what the call cost, once the stream ended or was closed (None before)
        self.cost: float | None = None
        self._url = url
        self._messages = messages
        self._priced = priced
        self._done = False

    def _parse(self, line: str | bytes | None) -> ModelResponse | None:
        """The chunk an event line carries (None for other lines; ``[DONE]`` ends the stream)."""
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
                f"{self._url} streamed a chunk that is not JSON: {payload[:200]!r}"
            ) from None
        if not isinstance(data, dict):
            raise MalformedResponseError(f"{self._url} streamed a non-object chunk: {data!r}")
        chunk = ModelResponse(data)
        self.chunks.append(chunk)
        return chunk

    def _broke(self, exc: Exception) -> APIConnectionError:
        return APIConnectionError(f"the stream from {self._url} broke: {exc}")

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

    def _final_price(self) -> costs.Priced:
        """The call priced: from the usage the last chunk reports, else from the tokens of the
        prompt and of the text received."""
        if not self._priced:
            return costs.Priced(self.model, ZERO, Usage())
        return costs.price_response(self.chunks, default_model=self.model, messages=self._messages)


class CompletionStream(_Chunks, Iterator[ModelResponse]):
    """Iterate for the chunks (``chunk.choices[0].delta.content``). The call's cost is charged
    once, when the stream is exhausted or closed (``close()``, ``with``, or early ``break`` then
    garbage collection); ``text`` is what has arrived so far."""

    def __init__(
        self,
        reply: Any,
        model: str,
        messages: list[Mapping[str, Any]],
        charge: Callable[[costs.Priced], None],
        priced: bool = True,
    ) -> None:
        super().__init__(reply.url, model, messages, priced)
        self._reply = reply
        self._charge = charge
        self._lines = reply.iter_lines(decode_unicode=True)
        self._lock = threading.Lock()

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> ModelResponse:
        if self._done:
            raise StopIteration
        try:
            for line in self._lines:
                chunk = self._parse(line)
                if chunk is not None:
                    return chunk
                if self._done:
                    break
        except OSError as exc:
            self.close()
            raise self._broke(exc) from exc
        except Exception:
            self.close()
            raise
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Stop reading and charge the call's cost (once)."""
        with self._lock:
            if self.cost is not None:
                return
            self._done = True
            self._reply.close()
            priced = self._final_price()
            self._charge(priced)
            self.cost = float(priced.cost)

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "cost", 0) is None:
            with contextlib.suppress(Exception):  # a finalizer must not raise
                self.close()


class AsyncCompletionStream(_Chunks, AsyncIterator[ModelResponse]):
    """:class:`CompletionStream` for asyncio: ``async for chunk in stream``; the cost is
    charged once, when the stream is exhausted or closed (``await stream.aclose()``,
    ``async with``; a stream dropped unclosed is closed by a task on its event loop)."""

    def __init__(
        self,
        reply: Any,
        model: str,
        messages: list[Mapping[str, Any]],
        charge: Callable[[costs.Priced], Any],
        priced: bool = True,
    ) -> None:
        super().__init__(str(reply.url), model, messages, priced)
        self._reply = reply
        self._charge = charge
        import asyncio  # here: loading it costs a plain import of the package a third

        self._lines = reply.aiter_lines()
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()

    def __aiter__(self) -> AsyncCompletionStream:
        return self

    async def __anext__(self) -> ModelResponse:
        if self._done:
            raise StopAsyncIteration
        try:
            async for line in self._lines:
                chunk = self._parse(line)
                if chunk is not None:
                    return chunk
                if self._done:
                    break
        except OSError as exc:
            await self.aclose()
            raise self._broke(exc) from exc
        except Exception as exc:
            await self.aclose()
            if type(exc).__module__.startswith(("httpx", "httpcore")):
                raise self._broke(exc) from exc
            raise
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading and charge the call's cost (once)."""
        async with self._lock:
            if self.cost is not None:
                return
            self._done = True
            await self._reply.aclose()
            priced = self._final_price()
            charged = self._charge(priced)
            if inspect.isawaitable(charged):
                await charged
            self.cost = float(priced.cost)

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if getattr(self, "cost", 0) is None:
            with contextlib.suppress(Exception):  # a finalizer must not raise
                if not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(_close_later, self)


def _close_later(stream: AsyncCompletionStream) -> None:
    import asyncio

    task = asyncio.ensure_future(stream.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[Any] = set()
