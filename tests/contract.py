"""Backends for the contract suite: every store the library ships, opened the way a user opens
it, on the real database or service (PostgreSQL, Redis and the budget service must run in CI)."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from budget_manager import BudgetManager

#: Every store; those that share state between processes also run the multi-process tests.
STORES = ["memory", "json", "sqlite", "postgresql", "redis", "hosted"]
SHARED = [s for s in STORES if s != "memory"]
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


class Backend:
    """Opens managers on one fresh store; closes them all at the end."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.url = ""
        self.clock: Callable[[], float] = time.time  # the service's, for a hosted store
        self._open: list[BudgetManager] = []

    def manager(self, project: str = "contract", **options: Any) -> BudgetManager:
        """A manager on the store (a ``clock=`` given here is the service's clock too)."""
        if "clock" in options:
            self.clock = options["clock"]
        if self.kind == "memory" and self._open:
            options.setdefault("store", self._open[0].store)  # one process: share the store
        if self.kind == "hosted":
            manager = BudgetManager(
                project, client_type="hosted", api_base=self.url, retries=1, backoff=0.01, **options
            )
        else:
            options.setdefault("store", self.url)
            manager = BudgetManager(project, **options)
        self._open.append(manager)
        return manager

    def close(self) -> None:
        for manager in reversed(self._open):
            with contextlib.suppress(Exception):  # a store already gone (a stopped service)
                manager.close()


@contextmanager
def backend(kind: str, folder: Path) -> Iterator[Backend]:
    with ExitStack() as stack:
        opened = Backend(kind)
        opened.url = stack.enter_context(store_url(kind, folder, lambda: opened.clock()))
        stack.callback(opened.close)
        yield opened
