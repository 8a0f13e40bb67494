"""AsyncBudgetManager: :class:`~budget_manager.BudgetManager` for asyncio."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from . import costs
from .async_completion import asend
from .hold import AsyncHold, Reservation
from .manager_flows import Clock, ManagerFlows, MaxTokens, completion_limit
from .operations import DEFAULT_TTL, AsyncOperations, adrive, awaiting
from .response import ModelResponse
from .stores import BudgetStore, JsonFileStore, adoptable_paths, default_path
from .stores.aio import AsyncBudgetStore, ThreadedStore, async_store_from_url
from .stores.async_hosted import AsyncHostedStore
from .stores.memory import MemoryStore
from .stream import AsyncCompletionStream


class AsyncBudgetManager(ManagerFlows):
    """:class:`~budget_manager.BudgetManager` for asyncio: the same constructor and the same
    methods, as coroutines (``await bm.update_cost(...)``); holds as
    ``async with bm.reserve(...) as hold:`` and ``await hold.settle(...)``.

    I/O is native asyncio where the backend has it: Redis (``redis.asyncio``), PostgreSQL
    (psycopg's async pool) and the budget service (httpx, the ``[async]`` extra). The JSON file,
    SQLite and memory stores run each operation in a worker thread, so the event loop never
    waits on one. The store is opened at the first call (or ``async with``); ``store=`` also
    takes an :class:`~budget_manager.stores.aio.AsyncBudgetStore`.
    """

    _ops: Any  # AsyncOperations or AsyncHostedStore, once opened
    _asynchronous = True

    def __init__(
        self,
        project_name: str,
        client_type: Literal["local", "hosted"] = "local",
        api_base: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        store: str | BudgetStore | AsyncBudgetStore | None = None,
        clock: Clock | None = None,
        on_unknown_model: Literal["refuse", "allow"] = "refuse",
        on_store_error: Literal["closed", "open"] = "closed",
        outbox_dir: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        self._configure(
            project_name, client_type, api_base, headers, clock, on_unknown_model, on_store_error
        )
        self._api_base = self._service_url(store)
        self._opening = (path, store, options, outbox_dir)
        self._store: Any = None
        self._ops = None
        self._listeners: list[Any] = []
        self._watched: set[Decimal] = set()
        self._lock: asyncio.Lock | None = None

    async def _ready(self) -> None:
        if self._ops is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._ops is None:
                    await self._open()

    async def _open(self) -> None:
        path, store, options, outbox_dir = self._opening
        if self._api_base is not None:
            hosted = AsyncHostedStore(
                self._api_base,
                self.project_name,
                headers=self.headers,
                clock=self._clock,
                **options,
            )
            self._store = hosted
            ops: Any = hosted
            where, keyed = hosted.api_base, True
        else:
            self._store = await _open_store(self.project_name, path, store, options)
            ops = AsyncOperations(self._store, self._clock)
            inner = self._store.store if isinstance(self._store, ThreadedStore) else self._store
            where, keyed = repr(inner), not isinstance(inner, JsonFileStore | MemoryStore)
        for listener in self._listeners:
            ops.subscribe(listener)
        if self._watched:
            ops.watch(self._watched)
        self._keep_costs(where, keyed, outbox_dir)
        await adrive(ops, self._deliver())
        self._ops = ops

    @property
    def store(self) -> Any:
        """Where this manager keeps its budgets (None until it is opened)."""
        return self._store

    def on_event(self, listener: Any) -> None:
        """Call ``listener(event)`` after every change this manager makes."""
        self._listeners.append(listener)
        if self._ops is not None:
            self._ops.subscribe(listener)

    def _watch(self, fractions: frozenset[Decimal]) -> None:
        self._watched.update(fractions)
        if self._ops is not None:
            self._ops.watch(self._watched)

    # -- the documented API (the flows, in manager_flows.py) ---------------------------------------
    create_budget = awaiting(ManagerFlows._create_budget)
    projected_cost = awaiting(ManagerFlows._projected_cost)
    get_total_budget = awaiting(ManagerFlows._get_total_budget)
    update_cost = awaiting(ManagerFlows._update_cost)
    get_current_cost = awaiting(ManagerFlows._get_current_cost)
    get_model_cost = awaiting(ManagerFlows._get_model_cost)
    is_valid_user = awaiting(ManagerFlows._is_valid_user)
    get_users = awaiting(ManagerFlows._get_users)
    reset_cost = awaiting(ManagerFlows._reset_cost)
    reset_on_duration = awaiting(ManagerFlows._reset_on_duration)
    update_budget_all_users = awaiting(ManagerFlows._update_budget_all_users)
    save_data = awaiting(ManagerFlows._save_data)
    pending_costs = awaiting(ManagerFlows._pending_costs)

    # -- holds ---------------------------------------------------------------------------------
    def reserve(
        self,
        user: str,
        *,
        amount: float | None = None,
        model: str | None = None,
        messages: Iterable[Mapping[str, Any]] | None = None,
        max_tokens: MaxTokens = None,
        ttl: float = DEFAULT_TTL,
        hold_id: str | None = None,
    ) -> Reservation:
        return Reservation(
            self._take(
                user,
                amount=amount,
                model=model,
                messages=messages,
                max_tokens=max_tokens,
                ttl=ttl,
                hold_id=hold_id,
            )
        )

    reserve.__doc__ = (ManagerFlows._reserve.__doc__ or "") + (
        "\n        Use as ``hold = await bm.reserve(...)`` or ``async with bm.reserve(...) as hold:``."
    )
    _take_taken = awaiting(ManagerFlows._reserve)

    async def _take(self, user: str, **options: Any) -> AsyncHold:
        return AsyncHold(self, await self._take_taken(user, **options))

    async def completion(
        self,
        *,
        user: str,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: MaxTokens = None,
        ttl: float = DEFAULT_TTL,
        **kwargs: Any,
    ) -> ModelResponse | AsyncCompletionStream:
        """:func:`budget_manager.acompletion` within the user's budget, as
        :meth:`BudgetManager.completion` does it: the worst case held first (nothing sent over
        budget), the hold settled with what the response reports (a stream: when it ends or is
        closed), or released if the call fails."""
        limit_key, max_tokens = completion_limit(kwargs, max_tokens)
        hold = await self.reserve(
            user, model=model, messages=messages, max_tokens=max_tokens, ttl=ttl
        )
        if hold.max_tokens is not None:
            kwargs[limit_key] = hold.max_tokens

        async def settle(priced: costs.Priced) -> None:
            await hold.settle(cost=priced.cost, tokens=priced.usage.counts())

        try:
            return await asend(
                model, messages, kwargs, on_cost=settle, priced=costs.has_price(model)
            )
        except BaseException:
            if not hold.done:
                await hold.release()
            raise

    get_holds = awaiting(ManagerFlows._get_holds)

    # -- beyond LiteLLM ------------------------------------------------------------------------
    get_remaining_budget = awaiting(ManagerFlows._get_remaining_budget)
    get_reset_at = awaiting(ManagerFlows._get_reset_at)
    delete_budget = awaiting(ManagerFlows._delete_budget)
    history = awaiting(ManagerFlows._history)
    spend_report = awaiting(ManagerFlows._spend_report)

    # -- operating budgets ---------------------------------------------------------------------
    add_cost = awaiting(ManagerFlows._add_cost)
    budget_status = awaiting(ManagerFlows._budget_status)
    budget_statuses = awaiting(ManagerFlows._budget_statuses)
    open_holds = awaiting(ManagerFlows._open_holds)
    release_hold = awaiting(ManagerFlows._release_by_id)
    reset_expired = awaiting(ManagerFlows._reset_expired)
    import_users = awaiting(ManagerFlows._import_users)
    export_users = awaiting(ManagerFlows._export_users)
    get_user_dict = awaiting(ManagerFlows._user_dict)

    @property
    def user_dict(self) -> Any:
        """``await bm.user_dict``: a copy of every record, as LiteLLM's ``user_dict`` holds
        them."""
        return self.get_user_dict()

    async def close(self) -> None:
        """Persist and release the store."""
        if self._ops is not None:
            await self._ops.close()

    async def __aenter__(self) -> AsyncBudgetManager:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _open_store(
    project: str,
    path: str | os.PathLike[str] | None,
    store: str | BudgetStore | AsyncBudgetStore | None,
    options: dict[str, Any],
) -> AsyncBudgetStore:
    """The asyncio store the arguments name (a file store opened in a worker thread)."""
    if isinstance(store, AsyncBudgetStore):
        return store
    if isinstance(store, BudgetStore):
        return ThreadedStore(store)
    if store is not None:
        return await asyncio.to_thread(async_store_from_url, store, project, **options)
    if path is not None:
        return ThreadedStore(await asyncio.to_thread(JsonFileStore, path, **options))
    options.setdefault("adopt", adoptable_paths(project))
    opened = await asyncio.to_thread(JsonFileStore, default_path(project), **options)
    return ThreadedStore(opened)
