"""Helpers for tests of the budget service: a real uvicorn server on 127.0.0.1 (in a thread or in
a child process), free ports, and throwaway PostgreSQL databases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BUDGET_MANAGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"service at {url} did not start")
        time.sleep(0.05)


class ThreadServer:
    """``create_app(...)`` served by uvicorn in a thread of this process, with the settings
    ``budget-manager serve`` uses (``serve_options`` go to its ServiceConfig)."""

    def __init__(
        self,
        port: int | None = None,
        wrap: Any = None,
        serve_options: dict[str, Any] | None = None,
        **app_options: Any,
    ) -> None:
        self.wrap = wrap  # optional ASGI middleware class put around the app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app_options = app_options
        self.serve_options = serve_options or {}
        self.app: Any = None
        self.server: Any = None
        self.thread: threading.Thread | None = None

    def start(self) -> ThreadServer:
        import uvicorn

        from budget_manager.server import create_app
        from budget_manager.server.serving import ServiceConfig

        app: Any = create_app(**self.app_options)
        self.app = app
        if self.wrap is not None:
            app = self.wrap(app)
        config = ServiceConfig(app, host="127.0.0.1", port=self.port, **self.serve_options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_healthy(self.url)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
            self.server = self.thread = None


class ProcessServer:
    """``budget-manager serve`` in a child process (so it can be killed with SIGKILL)."""

    def __init__(
        self,
        store: str,
        keys: tuple[str, ...] = (),
        port: int | None = None,
        workers: int = 1,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.workers = workers
        self.keys = keys
        self.args = args  # more options of budget-manager serve
        self.env = env or {}  # more environment (BUDGET_MANAGER_API_KEYS is empty unless set)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessServer:
        command = [sys.executable, "-m", "budget_manager.cli", "serve", "--store", self.store]
        command += ["--port", str(self.port), "--workers", str(self.workers), *self.args]
        for key in self.keys:
            command += ["--api-key", key]
        env = {**os.environ, "BUDGET_MANAGER_API_KEYS": "", **self.env}
        self.proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        wait_healthy(self.url)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def pg_available() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN} is unreachable: {exc}"


def require_pg() -> None:
    """Skip without PostgreSQL, except in CI (CI=true), where its absence is a failure."""
    problem = pg_available()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires PostgreSQL: {problem}")
    pytest.skip(problem)


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database's URL; dropped afterwards."""
    import psycopg

    require_pg()
    name = f"bm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        _close_pools()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh database's URL: ``kind`` is ``"sqlite"`` (a file in ``folder``) or
    ``"postgresql"`` (a throwaway database)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder}/budgets.db"
    else:
        with pg_database() as url:
            yield url


def _close_pools() -> None:
    from budget_manager.stores import postgres

    with postgres.PostgresStore.databases._lock:
        databases = list(postgres.PostgresStore.databases._by_url.values())
        postgres.PostgresStore.databases._by_url.clear()
    for db in databases:
        db.close()
