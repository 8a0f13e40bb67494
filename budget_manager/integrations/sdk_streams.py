"""What a wrapped call settles: the usage a response or stream reported, else what was counted;
and the SDK streams watched so that they settle when they end or are closed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from .. import costs
from ..costs.streams import fold
from ..costs.usage import field
from .sdk_calls import Call

#: The keyword arguments of ``hold.settle``: empty settles the held amount.
Settlement = dict[str, Any]


def response_settlement(call: Call, response: Any) -> Settlement:
    """How to settle a whole response: by the usage it reports (the held amount when it reports
    none: spend is never under-counted)."""
    if not call.priced:
        return {"cost": 0}
    if field(response, "usage") is None:
        return {}
    return {"completion_obj": response, "model": call.model}


def stream_settlement(call: Call, chunks: list[Any], finished: bool) -> Settlement:
    """How to settle a stream: a finished one by the usage it reported; one closed early (or
    reporting none) by the larger of what was reported so far and the prompt plus the text
    received, counted with the model's tokenizer."""
    if not call.priced:
        return {"cost": 0}
    folded = fold(chunks)
    if finished and folded.usage is not None:
        reported = {
            "model": folded.model,
            "usage": folded.usage,
            "service_tier": folded.service_tier,
        }
        return {"completion_obj": reported, "model": call.model}
    model = folded.model if folded.model and costs.has_price(folded.model) else call.model
    cost = costs.price_counted(model, call.prompt, folded.text).cost
    if folded.usage is not None:
        cost = max(cost, costs.price_response(chunks, call.model).cost)
    return {"cost": cost, "model": model}


class _Watched:
    """An SDK stream seen through: every attribute is the stream's own (``isinstance`` too)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._chunks: list[Any] = []
        self._ended = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._inner)

    def __repr__(self) -> str:
        return f"budgeted {self._inner!r}"


class WatchedStream(_Watched):
    """A ``Stream`` that calls ``on_end(chunks, finished)`` once, when it is exhausted
    (``finished``), closed, or fails."""

    def __init__(self, inner: Any, on_end: Callable[[list[Any], bool], Any]) -> None:
        super().__init__(inner)
        self._on_end = on_end

    def __iter__(self) -> WatchedStream:
        return self

    def __next__(self) -> Any:
        if self._ended:
            raise StopIteration
        try:
            chunk = next(self._inner)
        except StopIteration:
            self.end(finished=True)
            raise
        except BaseException:
            self.end(finished=False)
            raise
        self._chunks.append(chunk)
        return chunk

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self.end(finished=False)

    def end(self, finished: bool) -> None:
        """Settle, once."""
        if not self._ended:
            self._ended = True
            self._on_end(self._chunks, finished)

    def __enter__(self) -> WatchedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not self.__dict__.get("_ended", True):  # dropped unclosed: settle what it carried
            with contextlib.suppress(Exception):  # a finalizer must not raise
                self.close()


class AsyncWatchedStream(_Watched):
    """:class:`WatchedStream` for an ``AsyncStream``."""

    def __init__(self, inner: Any, on_end: Callable[[list[Any], bool], Awaitable[Any]]) -> None:
        super().__init__(inner)
        self._on_end = on_end
        self._loop = asyncio.get_running_loop()

    def __aiter__(self) -> AsyncWatchedStream:
        return self

    async def __anext__(self) -> Any:
        if self._ended:
            raise StopAsyncIteration
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            await self.end(finished=True)
            raise
        except BaseException:
            await self.end(finished=False)
            raise
        self._chunks.append(chunk)
        return chunk

    async def close(self) -> None:
        try:
            await self._inner.close()
        finally:
            await self.end(finished=False)

    async def end(self, finished: bool) -> None:
        """Settle, once."""
        if not self._ended:
            self._ended = True
            await self._on_end(self._chunks, finished)

    async def __aenter__(self) -> AsyncWatchedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __del__(self) -> None:
        if not self.__dict__.get("_ended", True):  # dropped unclosed: closed by a task on its loop
            with contextlib.suppress(Exception):  # a finalizer must not raise
                if not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(_close_later, self)


_closing: set[asyncio.Task[None]] = set()


def _close_later(stream: AsyncWatchedStream) -> None:
    task = asyncio.ensure_future(stream.close())
    _closing.add(task)  # the loop keeps only a weak reference to a task
    task.add_done_callback(_closing.discard)
