"""``acompletion()``: :func:`~budget_manager.completion` for asyncio, sent with httpx (the
``[async]`` extra): the same request, the same global cap, the same pricing."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import costs
from .completion import Outgoing, json_body
from .errors import APIConnectionError, APITimeoutError, BudgetManagerError
from .response import ModelResponse
from .stream import AsyncCompletionStream

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


async def acompletion(
    model: str, messages: Sequence[Mapping[str, Any]], **kwargs: Any
) -> ModelResponse | AsyncCompletionStream:
    """:func:`~budget_manager.completion` as a coroutine: the call is refused
    (BudgetExceededError) when the spend so far exceeds ``budget_manager.max_budget`` (with
    ``budget_manager.strict``, when its worst case does not fit), and its cost is added to
    ``budget_manager._current_cost``. ``stream=True`` returns an
    :class:`~budget_manager.stream.AsyncCompletionStream` (``async for chunk in stream``)."""
    return await asend(model, messages, kwargs)


async def asend(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    kwargs: dict[str, Any],
    on_cost: Callable[[costs.Priced], Any] | None = None,
    priced: bool = True,
) -> ModelResponse | AsyncCompletionStream:
    """:func:`acompletion`, also handing the call priced to ``on_cost`` (which may be a
    coroutine function: a budget's settle)."""
    call = Outgoing.admit(model, messages, kwargs, priced)
    try:
        reply = await _send(call)
        if call.stream:
            return AsyncCompletionStream(reply, model, call.messages, call.charger(on_cost), priced)
        data = json_body(reply.text)
        if data is None:
            raise call.not_json(reply.status_code, reply.text)
    except BaseException:
        call.release()
        raise
    response = call.response(data)
    charged = call.charger(on_cost)(call.cost_of(response))
    if asyncio.iscoroutine(charged):
        await charged
    return response


async def _send(call: Outgoing) -> Any:
    """POST the request; the reply (its body read, unless streamed) once it has answered with a
    success status."""
    httpx = _httpx()
    client = _client(httpx)
    request = client.build_request(
        "POST", call.url, json=call.body, headers=call.headers, timeout=_timeout(httpx, call)
    )
    try:
        reply = await client.send(request, stream=True)
        if reply.status_code >= 400 or not call.stream:
            try:
                await reply.aread()
            finally:
                await reply.aclose()
    except httpx.TimeoutException as exc:
        raise APITimeoutError(f"{call.url} did not answer within {call.timeout} s") from exc
    except httpx.HTTPError as exc:
        raise APIConnectionError(f"cannot reach {call.url}: {exc}") from exc
    if reply.status_code >= 400:
        raise call.refusal(reply.status_code, reply.text, json_body(reply.text))
    return reply


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise BudgetManagerError(
            "acompletion() sends with httpx: pip install 'budget-manager[async]'"
        ) from None
    return httpx


def _client(httpx: Any) -> Any:
    """One connection pool per event loop (an httpx client cannot move between loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = httpx.AsyncClient()
    return client


def _timeout(httpx: Any, call: Outgoing) -> Any:
    """requests' ``(connect, read)`` pair, or one number, as httpx takes it."""
    if isinstance(call.timeout, tuple) and len(call.timeout) == 2:
        connect, read = call.timeout
        return httpx.Timeout(read, connect=connect)
    return call.timeout
