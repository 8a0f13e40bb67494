"""The service's stores: one per project, all on one database, opened on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio

from ..errors import InvalidInputError
from ..stores import BudgetStore, store_from_url
from ..stores.sql import SqlStore
from ..stores.sqlite import SqliteDatabase

T = TypeVar("T")


class Stores:
    """One store per project, all on the same database, opened on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._by_project: dict[str, BudgetStore] = {}
        self._lock = threading.Lock()
        probe = self.get("-health-")  # opens the database and creates the schema now
        self.inline = isinstance(probe, SqlStore) and isinstance(probe.db, SqliteDatabase)

    def get(self, project: str) -> BudgetStore:
        store = self._by_project.get(project)
        if store is None:
            with self._lock:
                store = self._by_project.get(project)
                if store is None:
                    store = store_from_url(self.url, project)
                    if not isinstance(store, SqlStore):
                        store.close()
                        raise InvalidInputError(
                            f"the service keeps budgets in a database; use a sqlite:/// or "
                            f"postgresql:// store, not {self.url!r}"
                        )
                    self._by_project[project] = store
        return store

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` (a store operation) from a request handler: inline for SQLite, whose
        transactions are short and serialised anyway (a thread hop costs more than they do); in
        a worker thread for networked databases, so their round trips overlap."""
        if self.inline:
            return call()
        return await anyio.to_thread.run_sync(call)

    def close(self) -> None:
        with self._lock:
            stores, self._by_project = list(self._by_project.values()), {}
        for store in stores:
            store.close()
