"""``wrap``: an OpenAI or Anthropic SDK client whose model calls are held against a budget before
they are sent and settled with the usage they report."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .. import names
from ..costs.usage import field
from ..hold import AsyncHold, Hold
from .sdk_calls import Call, ClientKind, Endpoint, client_kind, read_call
from .sdk_streams import (
    AsyncWatchedStream,
    WatchedStream,
    response_settlement,
    stream_settlement,
)

if TYPE_CHECKING:
    import anthropic
    import openai

    from ..async_manager import AsyncBudgetManager
    from ..manager import BudgetManager

SyncClient = TypeVar("SyncClient", bound="openai.OpenAI | anthropic.Anthropic")
AsyncClient = TypeVar("AsyncClient", bound="openai.AsyncOpenAI | anthropic.AsyncAnthropic")

DEFAULT_TTL = 900.0


@overload
def wrap(
    client: SyncClient, manager: BudgetManager, *, user: str | None = None, ttl: float = ...
) -> SyncClient: ...
@overload
def wrap(
    client: AsyncClient,
    manager: AsyncBudgetManager,
    *,
    user: str | None = None,
    ttl: float = ...,
) -> AsyncClient: ...
def wrap(client: Any, manager: Any, *, user: str | None = None, ttl: float = DEFAULT_TTL) -> Any:
    """``client`` (``openai.OpenAI``/``AsyncOpenAI``, ``anthropic.Anthropic``/``AsyncAnthropic``)
    with its model calls kept within budgets: used exactly like the client, and typed as it.

    ``chat.completions.create``, ``responses.create`` and ``messages.create`` (their
    ``stream=True`` forms, ``.stream(...)`` helpers and ``.parse(...)``) hold the call's worst case on the user's
    budget before sending it (BudgetExceededError, and nothing sent, when it does not fit), then
    settle the hold with the usage the response reports; a stream settles when it ends or is
    closed, a failed call releases its hold. The user is ``user``, else the request's own field
    (OpenAI ``user`` or ``safety_identifier``, Anthropic ``metadata.user_id``); a call with
    neither is refused. An output limit of ``"fit"`` sends the largest one the budget can pay for.
    ``ttl`` is how long a hold lasts if its call never ends. Sync clients take a
    :class:`~budget_manager.BudgetManager`, asyncio clients an
    :class:`~budget_manager.AsyncBudgetManager`. Everything else passes through untouched.
    """
    kind = client_kind(client)
    from ..async_manager import AsyncBudgetManager
    from ..manager import BudgetManager

    wanted = AsyncBudgetManager if kind.is_async else BudgetManager
    if not isinstance(manager, wanted):
        raise TypeError(
            f"{type(client).__name__} is {'an asyncio' if kind.is_async else 'a blocking'} "
            f"client: wrap it with a {wanted.__name__}, not {type(manager).__name__}"
        )
    if user is not None:
        names.check(user, "user")
    return _Client(client, _Budget(manager, user, ttl, kind), ())


@dataclass(frozen=True, slots=True)
class _Budget:
    manager: Any
    user: str | None
    ttl: float
    kind: ClientKind

    def call(self, endpoint: Endpoint, request: dict[str, Any]) -> Call:
        return read_call(endpoint, request, self.user)

    def reserving(self, call: Call) -> Any:
        return self.manager.reserve(
            call.user,
            model=call.model,
            messages=call.prompt,
            max_tokens=call.max_tokens,
            ttl=self.ttl,
        )


class _SeenThrough:
    """An SDK object seen through: attributes, ``isinstance`` and ``repr`` are its own."""

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._target)

    def __repr__(self) -> str:
        return f"budgeted {self._target!r}"


class _Client(_SeenThrough):
    """The client, or one of its namespaces (``client.chat``), on the way to a budgeted one."""

    def __init__(self, target: Any, budget: _Budget, path: tuple[str, ...]) -> None:
        super().__init__(target)
        object.__setattr__(self, "_budget", budget)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        path = (*self._path, name)
        for endpoint in self._budget.kind.endpoints:
            if endpoint.path == path:
                resource = _AsyncResource if self._budget.kind.is_async else _Resource
                return resource(value, self._budget, endpoint)
            if endpoint.path[: len(path)] == path:
                return _Client(value, self._budget, path)
        if not self._path and name in ("with_options", "copy"):
            return _rewrapping(value, self._budget)
        return value


def _rewrapping(method: Callable[..., Any], budget: _Budget) -> Callable[..., Any]:
    """``client.with_options(...)`` / ``client.copy(...)`` that stay budgeted."""

    @functools.wraps(method)
    def rewrapped(*args: Any, **kwargs: Any) -> Any:
        return _Client(method(*args, **kwargs), budget, ())

    return rewrapped


class _Shim:
    """The resource as an SDK ``.stream(...)`` helper sees it, opening its raw stream through
    ``opener`` so that the stream is watched."""

    def __init__(self, target: Any, name: str, opener: Callable[..., Any]) -> None:
        self._target = target
        self.__dict__[name] = opener

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class _Resource(_SeenThrough):
    """A budgeted resource of a blocking client (``client.chat.completions``)."""

    def __init__(self, target: Any, budget: _Budget, endpoint: Endpoint) -> None:
        super().__init__(target)
        object.__setattr__(self, "_budget", budget)
        object.__setattr__(self, "_endpoint", endpoint)

    def create(self, **request: Any) -> Any:
        return self._send("create", request)

    def parse(self, **request: Any) -> Any:
        return self._send("parse", request)

    def _send(self, method: str, request: dict[str, Any]) -> Any:
        call = self._budget.call(self._endpoint, request)
        hold: Hold = self._budget.reserving(call)
        streaming = bool(request.get("stream"))
        try:
            result = getattr(self._target, method)(**call.to_send(hold.max_tokens, streaming))
        except BaseException as error:
            completed = answered(error)
            if completed is None:
                hold.release()
            else:
                hold.settle(**response_settlement(call, completed))
            raise
        if streaming:
            return WatchedStream(result, _settler(hold, call))
        hold.settle(**response_settlement(call, result))
        return result

    def stream(self, **request: Any) -> _StreamManager:
        return _StreamManager(self, request)


def answered(error: BaseException) -> Any:
    """The response an error was raised about after it arrived (and was billed), if any: the
    OpenAI SDK's ``LengthFinishReasonError`` and ``ContentFilterFinishReasonError`` from
    ``parse`` carry it. Other errors mean nothing was answered, and release the hold."""
    completion = getattr(error, "completion", None)
    return completion if field(completion, "usage") is not None else None


def _settler(hold: Hold, call: Call) -> Callable[[list[Any], bool], Any]:
    return lambda chunks, finished: hold.settle(**stream_settlement(call, chunks, finished))


class _StreamManager:
    """``resource.stream(...)``: the hold is taken as the block is entered (before the request
    is sent) and settled as it is left, by what the stream reported or carried."""

    def __init__(self, resource: _Resource, request: dict[str, Any]) -> None:
        self._resource = resource
        self._request = request
        self._inner: Any = None
        self._watched: list[WatchedStream] = []

    def __enter__(self) -> Any:
        resource = self._resource
        target, endpoint = resource._target, resource._endpoint
        call = resource._budget.call(endpoint, self._request)
        hold: Hold = resource._budget.reserving(call)
        open_raw = getattr(target, endpoint.stream_opener)

        def opener(*args: Any, **kwargs: Any) -> WatchedStream:
            watched = WatchedStream(open_raw(*args, **kwargs), _settler(hold, call))
            self._watched.append(watched)
            return watched

        try:
            shim = _Shim(target, endpoint.stream_opener, opener)
            self._inner = type(target).stream(shim, **call.to_send(hold.max_tokens, True))
            return self._inner.__enter__()
        except BaseException:
            if not hold.done:
                hold.release()
            raise

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self._inner.__exit__(*exc)
        finally:
            for watched in self._watched:
                watched.end(finished=False)  # settles only if the stream did not end


class _AsyncResource(_SeenThrough):
    """A budgeted resource of an asyncio client."""

    def __init__(self, target: Any, budget: _Budget, endpoint: Endpoint) -> None:
        super().__init__(target)
        object.__setattr__(self, "_budget", budget)
        object.__setattr__(self, "_endpoint", endpoint)

    async def create(self, **request: Any) -> Any:
        return await self._send("create", request)

    async def parse(self, **request: Any) -> Any:
        return await self._send("parse", request)

    async def _send(self, method: str, request: dict[str, Any]) -> Any:
        call = self._budget.call(self._endpoint, request)
        hold: AsyncHold = await self._budget.reserving(call)
        streaming = bool(request.get("stream"))
        try:
            result = await getattr(self._target, method)(**call.to_send(hold.max_tokens, streaming))
        except BaseException as error:
            completed = answered(error)
            if completed is None:
                await hold.release()
            else:
                await hold.settle(**response_settlement(call, completed))
            raise
        if streaming:
            return AsyncWatchedStream(result, _async_settler(hold, call))
        await hold.settle(**response_settlement(call, result))
        return result

    def stream(self, **request: Any) -> _AsyncStreamManager:
        return _AsyncStreamManager(self, request)


def _async_settler(hold: AsyncHold, call: Call) -> Callable[[list[Any], bool], Any]:
    async def settle(chunks: list[Any], finished: bool) -> None:
        await hold.settle(**stream_settlement(call, chunks, finished))

    return settle


class _AsyncStreamManager:
    """:class:`_StreamManager` for asyncio: ``async with resource.stream(...) as stream:``."""

    def __init__(self, resource: _AsyncResource, request: dict[str, Any]) -> None:
        self._resource = resource
        self._request = request
        self._inner: Any = None
        self._watched: list[AsyncWatchedStream] = []

    async def __aenter__(self) -> Any:
        resource = self._resource
        target, endpoint = resource._target, resource._endpoint
        call = resource._budget.call(endpoint, self._request)
        hold: AsyncHold = await resource._budget.reserving(call)
        open_raw = getattr(target, endpoint.stream_opener)

        async def opener(*args: Any, **kwargs: Any) -> AsyncWatchedStream:
            watched = AsyncWatchedStream(
                await open_raw(*args, **kwargs), _async_settler(hold, call)
            )
            self._watched.append(watched)
            return watched

        try:
            shim = _Shim(target, endpoint.stream_opener, opener)
            self._inner = type(target).stream(shim, **call.to_send(hold.max_tokens, True))
            return await self._inner.__aenter__()
        except BaseException:
            if not hold.done:
                await hold.release()
            raise

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self._inner.__aexit__(*exc)
        finally:
            for watched in self._watched:
                await watched.end(finished=False)
