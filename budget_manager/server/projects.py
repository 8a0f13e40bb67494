"""The service's projects: the operations layer over one store per project, all on one
database.

The database is opened once, when the service starts. A project's store is a light handle on it,
made on first use and kept (with its operations layer) in a cache of the most recently used
projects, so the memory the service holds does not grow with the number of distinct project
names it has seen.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from ..errors import InvalidInputError
from ..events import Listener
from ..operations import AsyncOperations, Clock, Operations
from ..stores import store_from_url
from ..stores.postgres import AsyncPostgresStore
from ..stores.sqlite import SqliteStore

T = TypeVar("T")
#: The operations of one project: sync for SQLite (its transactions are short and serialised
#: anyway, so they run inline: a thread hop costs more than they do), asyncio for PostgreSQL (its
#: round trips overlap on the event loop, with no thread hop at all).
ProjectOperations = Operations | AsyncOperations
#: Projects whose stores are kept between requests (least recently used ones are dropped).
DEFAULT_MAX_PROJECTS = 1024
#: The project the health check reads (any name would do; it is never written).
HEALTH_PROJECT = "-health-"


class Stores:
    """The operations of each project on the database ``url``, with ``clock``; ``listeners``
    hear every change, ``watchers(project)`` every change of that project; ``thresholds``
    are the fractions of every budget whose crossing is marked and announced;
    ``store_options`` go to every store (``max_models``, ``idempotency_ttl``,
    ``history_retention``)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        listeners: tuple[Listener, ...] = (),
        watchers: tuple[Callable[[str], Listener], ...] = (),
        thresholds: Sequence[Decimal] = (),
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
        self.watchers = watchers
        self.thresholds = tuple(thresholds)
        self.max_projects = max_projects
        self._options = store_options
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, ProjectOperations] = OrderedDict()
        self._root: SqliteStore | AsyncPostgresStore | None = None
        self._database()  # opens the database (and creates its tables) now

    def _database(self) -> SqliteStore | AsyncPostgresStore:
        """The store the others share the database of, opened again after ``close()``."""
        root = self._root
        if root is None:
            with self._lock:
                root = self._root
                if root is None:
                    root = self._root = self._open()
        return root

    def _open(self) -> SqliteStore | AsyncPostgresStore:
        if self.url.split("://", 1)[0].lower() in ("postgresql", "postgres"):
            return AsyncPostgresStore.from_url(self.url, HEALTH_PROJECT, **self._options)
        opened = store_from_url(self.url, HEALTH_PROJECT, **self._options)
        if not isinstance(opened, SqliteStore):
            opened.close()
            raise InvalidInputError(
                "the service keeps budgets in a database; use a sqlite:/// or postgresql:// "
                f"store, not {self.url!r}"
            )
        return opened

    def get(self, project: str) -> ProjectOperations:
        """The operations of ``project`` (InvalidInputError if the name is not acceptable)."""
        with self._lock:
            found = self._cache.get(project)
            if found is not None:
                self._cache.move_to_end(project)
                return found
        root = self._database()
        ops: ProjectOperations
        if isinstance(root, AsyncPostgresStore):
            ops = AsyncOperations(root.sibling(project), self.clock, self.thresholds)
        else:
            ops = Operations(root.sibling(project), self.clock, self.thresholds)
        for listener in self.listeners:
            ops.subscribe(listener)
        for watcher in self.watchers:
            ops.subscribe(watcher(project))
        with self._lock:
            self._cache[project] = ops
            if len(self._cache) > self.max_projects:
                self._cache.popitem(last=False)
        return ops

    def cached(self) -> int:
        """How many project stores are kept."""
        return len(self._cache)

    async def projects(self) -> list[str]:
        """The projects of the database with at least one budget, sorted."""
        return await self.run(self._database().projects)

    async def check(self) -> None:
        """Raise StoreError unless the database answers."""
        await self.run(self.get(HEALTH_PROJECT).users)

    @staticmethod
    async def run(operation: Callable[..., T | Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``operation(*args, **kwargs)`` of a project's operations, awaited if it is a
        coroutine (PostgreSQL), else inline (SQLite)."""
        result = operation(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    async def close(self) -> None:
        """Close the database (a later request opens it again)."""
        with self._lock:
            self._cache.clear()
            root, self._root = self._root, None
        if root is not None:
            await self.run(root.close)
