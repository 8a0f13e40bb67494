"""Backends for the contract suite: every store the library ships, opened the way a user opens
it, on the real database or service (PostgreSQL, Redis and the budget service must run in CI)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from budget_manager import AsyncBudgetManager, AsyncHold, BudgetManager

#: Every store; those that share state between processes also run the multi-process tests.
STORES = ["memory", "json", "sqlite", "postgresql", "redis", "hosted"]
SHARED = [s for s in STORES if s != "memory"]
#: Every store through both APIs: BudgetManager, and AsyncBudgetManager (driven through
#: :class:`Blocking`, so that the very same tests run against it).
APIS = ["sync", "async"]
CASES = [(kind, api) for api in APIS for kind in STORES]
SHARED_CASES = [(kind, api) for kind, api in CASES if kind in SHARED]
#: The stores a manager opens itself (with its own store options), not through a service.
OWN_CASES = [(kind, api) for kind, api in CASES if kind != "hosted"]
REDIS_URL = os.environ.get("BUDGET_MANAGER_TEST_REDIS", "redis://127.0.0.1:6379/0")

Factory = Callable[..., BudgetManager]


def require(what: str, problem: str | None) -> None:
    """Skip when a service is missing, except in CI (CI=true), where that is a failure."""
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires {what}: {problem}")
    pytest.skip(problem)


def redis_available() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return None
    except Exception as exc:
        return f"Redis at {REDIS_URL} is unreachable: {exc}"


@contextmanager
def store_url(kind: str, folder: Path, clock: Callable[[], float] = time.time) -> Iterator[str]:
    """A fresh, empty store of ``kind``: the URL a user would pass as ``store=`` (the service
    runs on ``clock``)."""
    if kind == "memory":
        yield "memory://"
    elif kind == "json":
        yield f"json://{folder}/budgets.json"
    elif kind == "sqlite":
        yield f"sqlite:///{folder}/budgets.db"
    elif kind == "postgresql":
        from _service import pg_database

        with pg_database() as url:
            yield url
    elif kind == "redis":
        require("Redis", redis_available())
        prefix = f"bmtest-{uuid.uuid4().hex[:12]}"
        try:
            yield f"{REDIS_URL}?prefix={prefix}"
        finally:  # the shared Redis is never flushed: only this test's keys go
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                client.delete(key)
            client.close()
    elif kind == "hosted":
        from _service import ThreadServer

        server = ThreadServer(store_url=f"sqlite:///{folder}/service.db", clock=clock)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
    else:  # pragma: no cover
        raise ValueError(kind)


class Loop:
    """An event loop in a thread of its own, running coroutines for synchronous callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, awaitable: Any) -> Any:
        async def wait() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wait(), self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class Blocking:
    """An asyncio object (an AsyncBudgetManager, its ledger, an AsyncHold) used synchronously:
    each coroutine it returns is run to its end on :class:`Loop` (concurrent callers' coroutines
    then run concurrently on that one loop, as an application's tasks would)."""

    def __init__(self, target: Any, loop: Loop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name == "_ops":
            return Blocking(value, self._loop)
        if inspect.isawaitable(value):  # a property such as user_dict
            return self._result(value)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            return self._result(result) if inspect.isawaitable(result) else result

        return call

    def _result(self, awaitable: Any) -> Any:
        result = self._loop.run(awaitable)
        return Blocking(result, self._loop) if isinstance(result, AsyncHold) else result

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.run(self._target.__aexit__(*exc))


class Backend:
    """Opens managers on one fresh store; closes them all at the end."""

    def __init__(self, kind: str, api: str = "sync") -> None:
        self.kind = kind
        self.api = api
        self.url = ""
        self.clock: Callable[[], float] = time.time  # the service's, for a hosted store
        self._open: list[Any] = []
        self._loop = Loop() if api == "async" else None

    def manager(self, project: str = "contract", **options: Any) -> BudgetManager:
        """A manager on the store (a ``clock=`` given here is the service's clock too); with
        the async API an AsyncBudgetManager, called through :class:`Blocking`."""
        if "clock" in options:
            self.clock = options["clock"]
        if self.kind == "memory" and self._open:
            options.setdefault("store", self._open[0].store)  # one process: share the store
        kind: Any = BudgetManager if self._loop is None else AsyncBudgetManager
        if self.kind == "hosted":
            manager = kind(
                project, client_type="hosted", api_base=self.url, retries=1, backoff=0.01, **options
            )
        else:
            options.setdefault("store", self.url)
            manager = kind(project, **options)
        if self._loop is not None:
            self._loop.run(manager._ready())
            manager = Blocking(manager, self._loop)
        self._open.append(manager)
        return manager  # type: ignore[no-any-return]

    def close(self) -> None:
        for manager in reversed(self._open):
            with contextlib.suppress(Exception):  # a store already gone (a stopped service)
                manager.close()
        if self._loop is not None:
            self._loop.close()


@contextmanager
def backend(kind: str, folder: Path, api: str = "sync") -> Iterator[Backend]:
    with ExitStack() as stack:
        opened = Backend(kind, api)
        opened.url = stack.enter_context(store_url(kind, folder, lambda: opened.clock()))
        stack.callback(opened.close)
        yield opened
