"""A budget service for asyncio: :class:`AsyncHostedStore`, the
:class:`~budget_manager.stores.hosted.HostedStore` of ``AsyncBudgetManager``, over httpx (the
``[async]`` extra: httpx is what the OpenAI and Anthropic SDKs already send with, it keeps one
pool of keep-alive connections per client, and it speaks HTTP the same way in sync and asyncio
code). The same requests, answers and retries as the sync client (the flows of
:class:`~budget_manager.stores.hosted.ServiceFlows`); a service speaking only LiteLLM's protocol
is run through the sync client in a worker thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from ..events import Listener
from ..operations import AsyncOperations, adrive, awaiting
from .aio import ThreadedStore
from .hosted import LEDGER_OPERATIONS, LiteLLMService, Protocol, ServiceFlows, checked_base, probe
from .http import DEFAULT_BACKOFF, DEFAULT_RETRIES, DEFAULT_TIMEOUT, AsyncHttpClient, HttpClient

Clock = Callable[[], float]


class AsyncAtomicService(ServiceFlows):
    """:class:`~budget_manager.stores.hosted.ServiceFlows` over an :class:`AsyncHttpClient`."""

    def __init__(self, http: AsyncHttpClient, project: str) -> None:
        super().__init__(http.api_base, project)
        self.http = http

    get = awaiting(ServiceFlows._get, "http")
    users = awaiting(ServiceFlows._users, "http")
    records = awaiting(ServiceFlows._records, "http")
    holds = awaiting(ServiceFlows._holds, "http")
    history = awaiting(ServiceFlows._history, "http")
    available = awaiting(ServiceFlows._available, "http")
    put = awaiting(ServiceFlows._put, "http")
    delete = awaiting(ServiceFlows._delete, "http")
    charge = awaiting(ServiceFlows._charge, "http")
    hold = awaiting(ServiceFlows._hold, "http")
    settle = awaiting(ServiceFlows._settle, "http")
    release = awaiting(ServiceFlows._release, "http")
    reset = awaiting(ServiceFlows._reset, "http")
    roll = awaiting(ServiceFlows._roll, "http")
    roll_all = awaiting(ServiceFlows._roll_all, "http")
    replace_all = awaiting(ServiceFlows._replace_all, "http")
    save = awaiting(ServiceFlows._save, "http")


class AsyncHostedStore:
    """One project's budgets on a budget service, for asyncio: every operation of
    :class:`~budget_manager.stores.hosted.HostedStore` as a coroutine. The service is asked which
    protocol it speaks at the first operation."""

    def __init__(
        self,
        api_base: str,
        project: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        protocol: Protocol | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.api_base, self.project = checked_base(api_base, project)
        self.http = AsyncHttpClient(
            self.api_base, headers, timeout=timeout, retries=retries, backoff=backoff
        )
        self._headers = headers
        self.protocol: Protocol | None = protocol
        self._clock = clock
        self._target: Any = None
        self._listeners: list[Listener] = []
        self._watched: set[Decimal] = set()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"AsyncHostedStore({self.api_base!r}, project={self.project!r})"

    async def _ledger(self) -> Any:
        """Who does the operations: asks the service which protocol it speaks, the first time."""
        if self._target is not None:
            return self._target
        async with self._lock:
            if self._target is None:
                loaded = None
                if self.protocol is None:
                    self.protocol, loaded = await adrive(
                        self.http, probe(self.api_base, self.project)
                    )
                if self.protocol == "atomic":
                    target: Any = AsyncAtomicService(self.http, self.project)
                else:
                    store = await asyncio.to_thread(
                        LiteLLMService, self._sync_client(), self.project, loaded
                    )
                    target = AsyncOperations(ThreadedStore(store), self._clock)
                for listener in self._listeners:
                    target.subscribe(listener)
                if self._watched:
                    target.watch(self._watched)
                self._target = target
        return self._target

    def _sync_client(self) -> HttpClient:
        http = self.http
        return HttpClient(
            self.api_base,
            self._headers,
            timeout=http.timeout,
            retries=http.retries,
            backoff=http.backoff,
        )

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(event)`` after every change made through this store."""
        self._listeners.append(listener)
        if self._target is not None:
            self._target.subscribe(listener)

    def watch(self, fractions: Iterable[Decimal]) -> None:
        """Also have the service mark and announce crossings of ``fractions``."""
        self._watched.update(fractions)
        if self._target is not None:
            self._target.watch(self._watched)

    def __getattr__(self, name: str) -> Any:
        if name not in LEDGER_OPERATIONS:
            raise AttributeError(name)

        async def operation(*args: Any, **kwargs: Any) -> Any:
            return await getattr(await self._ledger(), name)(*args, **kwargs)

        operation.__name__ = name
        return operation

    async def close(self) -> None:
        if isinstance(self._target, AsyncOperations):
            await self._target.close()
        await self.http.close()
