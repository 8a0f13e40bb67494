"""The service's projects: the operations layer over one store per project, all on one
database.

The database is opened once, when the service starts. A project's store is a light handle on it,
made on first use and kept (with its operations layer) in a cache of the most recently used
projects, so the memory the service holds does not grow with the number of distinct project
names it has seen.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from ..errors import InvalidInputError
from ..events import Listener
from ..operations import Clock, Operations
from ..stores import store_from_url
from ..stores.sql import SqlStore
from ..stores.sqlite import SqliteDatabase

T = TypeVar("T")
#: Projects whose stores are kept between requests (least recently used ones are dropped).
DEFAULT_MAX_PROJECTS = 1024
#: The project the health check reads (any name would do; it is never written).
HEALTH_PROJECT = "-health-"


class Stores:
    """The operations of each project on the database ``url``, with ``clock``; ``listeners``
    hear every change; ``store_options`` go to every store (``max_models``,
    ``idempotency_ttl``)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        listeners: tuple[Listener, ...] = (),
        max_projects: int = DEFAULT_MAX_PROJECTS,
        **store_options: Any,
    ) -> None:
        if isinstance(max_projects, bool) or not isinstance(max_projects, int) or max_projects < 1:
            raise InvalidInputError(
                f"max_projects must be a positive integer, got {max_projects!r}"
            )
        self.url = url
        self.clock = clock
        self.listeners = listeners
        self.max_projects = max_projects
        self._options = store_options
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Operations] = OrderedDict()
        self._root: SqlStore | None = None
        self.inline = isinstance(self._database().db, SqliteDatabase)  # opens the database now

    def _database(self) -> SqlStore:
        """The store the others share the database of, opened again after ``close()``."""
        root = self._root
        if root is None:
            with self._lock:
                root = self._root
                if root is None:
                    opened = store_from_url(self.url, HEALTH_PROJECT, **self._options)
                    if not isinstance(opened, SqlStore):
                        opened.close()
                        raise InvalidInputError(
                            "the service keeps budgets in a database; use a sqlite:/// or "
                            f"postgresql:// store, not {self.url!r}"
                        )
                    root = self._root = opened
        return root

    def get(self, project: str) -> Operations:
        """The operations of ``project`` (InvalidInputError if the name is not acceptable)."""
        with self._lock:
            found = self._cache.get(project)
            if found is not None:
                self._cache.move_to_end(project)
                return found
        ops = Operations(self._database().sibling(project), self.clock)
        for listener in self.listeners:
            ops.subscribe(listener)
        with self._lock:
            self._cache[project] = ops
            if len(self._cache) > self.max_projects:
                self._cache.popitem(last=False)
        return ops

    def cached(self) -> int:
        """How many project stores are kept."""
        return len(self._cache)

    def check(self) -> None:
        """Raise StoreError unless the database answers."""
        self._database().users()

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` (a store operation) from a request handler: inline for SQLite, whose
        transactions are short and serialised anyway (a thread hop costs more than they do); in
        a worker thread for networked databases, so their round trips overlap."""
        if self.inline:
            return call()
        return await anyio.to_thread.run_sync(call)

    def close(self) -> None:
        """Close the database (a later request opens it again)."""
        with self._lock:
            self._cache.clear()
            root, self._root = self._root, None
        if root is not None:
            root.close()
