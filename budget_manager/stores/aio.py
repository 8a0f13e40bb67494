"""Stores for asyncio: the operations of :class:`~budget_manager.stores.base.BudgetStore` as
coroutines, with native asyncio I/O where the backend has it (PostgreSQL: psycopg's async pool;
Redis: ``redis.asyncio``) and a worker thread per operation for the stores that are files
(JSON, SQLite, memory), so the event loop is never blocked by one."""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

from .. import ledger
from ..history import HistoryEvent
from ..ledger import Level, Outcome
from ..records import HoldRecord, UserRecord
from .base import BudgetStore, store_from_url, wrap_backend_errors


class AsyncBudgetStore(ABC):
    """Budgets and holds of one project, for asyncio; the same operations and rules as
    :class:`~budget_manager.stores.base.BudgetStore`, awaited."""

    backend_errors: ClassVar[Any] = BudgetStore.backend_errors

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        wrap_backend_errors(cls)

    @abstractmethod
    async def get(self, user: str) -> UserRecord | None: ...

    @abstractmethod
    async def users(self) -> list[str]: ...

    async def records(self) -> dict[str, UserRecord]:
        found = {}
        for user in await self.users():
            record = await self.get(user)
            if record is not None:
                found[user] = record
        return found

    async def chain(self, user: str) -> list[UserRecord]:
        """The user's record and each ancestor's, the user's first; UnknownUserError if none."""
        found: list[UserRecord] = []
        name: str | None = user
        while name is not None and len(found) <= ledger.MAX_LEVELS:
            record = await self.get(name)
            if record is None:
                break
            found.append(record)
            name = record.parent
        if not found:
            return ledger.chain(lambda _: None, user)  # raises UnknownUserError
        return found

    @abstractmethod
    async def holds(self, user: str | None = None) -> list[HoldRecord]: ...

    @abstractmethod
    async def history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HistoryEvent]: ...

    @abstractmethod
    async def put(self, user: str, record: UserRecord, now: float | None = None) -> UserRecord: ...

    @abstractmethod
    async def delete(self, user: str, now: float | None = None) -> bool: ...

    @abstractmethod
    async def replace_all(self, records: dict[str, UserRecord]) -> None: ...

    @abstractmethod
    async def charge(
        self,
        levels: Sequence[Level],
        model: str | None,
        amount: Decimal,
        now: float,
        limit_check: bool = False,
        key: str | None = None,
        thresholds: Sequence[Decimal] = (),
        tokens: dict[str, int] | None = None,
    ) -> Outcome: ...

    @abstractmethod
    async def hold(
        self,
        levels: Sequence[Level],
        hold_id: str,
        amount: Decimal,
        expires_at: float,
        now: float,
        model: str | None = None,
        limit_check: bool = True,
    ) -> Outcome: ...

    @abstractmethod
    async def settle(
        self,
        hold_id: str,
        amount: Decimal,
        model: str | None,
        thresholds: Sequence[Decimal] = (),
        known: HoldRecord | None = None,
        now: float | None = None,
        tokens: dict[str, int] | None = None,
    ) -> Outcome: ...

    @abstractmethod
    async def release(self, hold_id: str, now: float | None = None) -> Outcome: ...

    @abstractmethod
    async def reset(self, user: str, now: float | None = None) -> Outcome: ...

    @abstractmethod
    async def roll(self, levels: Sequence[Level], now: float | None = None) -> Outcome: ...

    async def save(self) -> dict[str, Any]:
        return {"status": "success"}

    async def close(self) -> None:
        """Release connections; the store is unusable afterwards."""


class ThreadedStore(AsyncBudgetStore):
    """A (synchronous) store whose every operation runs in a worker thread."""

    def __init__(self, store: BudgetStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"ThreadedStore({self.store!r})"

    async def _run(self, method: str, *args: Any) -> Any:
        return await asyncio.to_thread(functools.partial(getattr(self.store, method), *args))

    async def get(self, user: str) -> UserRecord | None:
        found: UserRecord | None = await self._run("get", user)
        return found

    async def users(self) -> list[str]:
        found: list[str] = await self._run("users")
        return found

    async def records(self) -> dict[str, UserRecord]:
        found: dict[str, UserRecord] = await self._run("records")
        return found

    async def chain(self, user: str) -> list[UserRecord]:
        found: list[UserRecord] = await self._run("chain", user)
        return found

    async def holds(self, user: str | None = None) -> list[HoldRecord]:
        found: list[HoldRecord] = await self._run("holds", user)
        return found

    async def history(self, *args: Any) -> list[HistoryEvent]:
        found: list[HistoryEvent] = await self._run("history", *args)
        return found

    async def put(self, *args: Any) -> UserRecord:
        stored: UserRecord = await self._run("put", *args)
        return stored

    async def delete(self, *args: Any) -> bool:
        return bool(await self._run("delete", *args))

    async def replace_all(self, records: dict[str, UserRecord]) -> None:
        await self._run("replace_all", records)

    async def charge(self, *args: Any) -> Outcome:
        outcome: Outcome = await self._run("charge", *args)
        return outcome

    async def hold(self, *args: Any) -> Outcome:
        outcome: Outcome = await self._run("hold", *args)
        return outcome

    async def settle(self, *args: Any) -> Outcome:
        outcome: Outcome = await self._run("settle", *args)
        return outcome

    async def release(self, *args: Any) -> Outcome:
        outcome: Outcome = await self._run("release", *args)
        return outcome

    async def reset(self, *args: Any) -> Outcome:
        outcome: Outcome = await self._run("reset", *args)
        return outcome

    async def roll(self, *args: Any) -> Outcome:
        outcome: Outcome = await self._run("roll", *args)
        return outcome

    async def save(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._run("save")
        return answer

    async def close(self) -> None:
        await self._run("close")


def async_store_from_url(url: str, project: str, **options: Any) -> AsyncBudgetStore:
    """The asyncio store a URL names: native for ``postgresql://`` (and ``redis://``), a worker
    thread per operation for the others."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        from .postgres import AsyncPostgresStore

        return AsyncPostgresStore.from_url(url, project, **options)
    if scheme in ("redis", "rediss"):
        from .redis import AsyncRedisStore

        return AsyncRedisStore.from_url(url, project, **options)
    store: BudgetStore = store_from_url(url, project, **options)
    return ThreadedStore(store)
