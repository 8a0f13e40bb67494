"""LiteLLM's streams as the enforcing wrappers hand them out: the same chunks, and the hold
settled once, when the stream ends or is closed."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any


class BudgetedStream(Iterator[Any]):
    """A LiteLLM stream whose hold is settled with the chunks received once it is exhausted,
    breaks, or is closed (``close()``, ``with``); anything else is LiteLLM's stream's."""

    def __init__(self, stream: Any, settle: Callable[[list[Any]], None]) -> None:
        self._stream = stream
        self._settle = settle
        self.chunks: list[Any] = []
        self._lock = threading.Lock()
        self._settled = False

    def __iter__(self) -> BudgetedStream:
        return self

    def __next__(self) -> Any:
        if self._settled:
            raise StopIteration
        try:
            chunk = next(self._stream)
        except BaseException:
            self.close()
            raise
        self.chunks.append(chunk)
        return chunk

    def close(self) -> None:
        """Stop reading and settle the hold with what was received (once)."""
        with self._lock:
            if self._settled:
                return
            self._settled = True
        closer = getattr(self._stream, "close", None)
        if callable(closer):
            with contextlib.suppress(Exception):  # the stream is done with either way
                closer()
        self._settle(self.chunks)

    def __enter__(self) -> BudgetedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:
        if not getattr(self, "_settled", True):
            with contextlib.suppress(Exception):  # a finalizer must not raise
                self.close()


class AsyncBudgetedStream(AsyncIterator[Any]):
    """:class:`BudgetedStream` for ``litellm.acompletion``: ``async for``, ``await aclose()``,
    ``async with``."""

    def __init__(self, stream: Any, settle: Callable[[list[Any]], Awaitable[None]]) -> None:
        self._stream = stream
        self._settle = settle
        self.chunks: list[Any] = []
        self._settled = False
        self._loop = asyncio.get_running_loop()

    def __aiter__(self) -> AsyncBudgetedStream:
        return self

    async def __anext__(self) -> Any:
        if self._settled:
            raise StopAsyncIteration
        try:
            chunk = await self._stream.__anext__()
        except BaseException:
            await self.aclose()
            raise
        self.chunks.append(chunk)
        return chunk

    async def aclose(self) -> None:
        """Stop reading and settle the hold with what was received (once)."""
        if self._settled:
            return
        self._settled = True
        closer = getattr(self._stream, "aclose", None)
        if callable(closer):
            with contextlib.suppress(Exception):
                await closer()
        await self._settle(self.chunks)

    async def __aenter__(self) -> AsyncBudgetedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:
        if not getattr(self, "_settled", True):
            with contextlib.suppress(Exception):  # a finalizer must not raise
                if not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(_close_later, self)


def _close_later(stream: AsyncBudgetedStream) -> None:
    task = asyncio.ensure_future(stream.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[Any] = set()
