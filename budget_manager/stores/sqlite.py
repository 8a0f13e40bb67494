"""Budgets in a SQLite database file (``sqlite:///budgets.db``), shared safely by processes.

The URL follows SQLAlchemy's form: ``sqlite:///relative/path.db`` or ``sqlite:////abs/path.db``.
Query options: ``synchronous`` (``NORMAL`` by default, ``FULL`` for power-loss durability of
every commit) and ``busy_timeout`` (milliseconds a writer waits for the lock; 30000).

The database runs in WAL mode: readers never block the writer, and with ``synchronous=NORMAL`` a
committed change survives the process being killed (the WAL is in the OS's hands); only a power
loss or OS crash can lose the last commits. Writes take the database lock up front
(``BEGIN IMMEDIATE``), so a read-modify-write never has to be retried.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, unquote

from ..errors import InvalidInputError, StoreError, StoreUnavailableError
from .base import register
from .sql import Cursor, Database, SharedDatabases, SqlStore

_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


class SqliteDatabase(Database):
    """A SQLite file with one connection per thread (and per process)."""

    money_type = "TEXT"
    float_type = "REAL"
    bytes_type = "BLOB"
    keyed_table_options = " WITHOUT ROWID"

    def __init__(self, path: str, synchronous: str = "NORMAL", busy_timeout_ms: int = 30_000):
        super().__init__()
        if synchronous.upper() not in _SYNC_MODES:
            raise InvalidInputError(
                f"synchronous must be one of {_SYNC_MODES}, got {synchronous!r}"
            )
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise StoreError(f"folder {folder!r} does not exist")
        self.path = path
        self._synchronous = synchronous.upper()
        self._busy_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        with self.write() as cur:
            for statement in self.schema():
                cur.execute(statement)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_ms)}")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(
                f"cannot open SQLite database {self.path!r}: {exc}"
            ) from exc
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        cur = self._connection().cursor()
        try:
            yield cur
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database {self.path!r}: {exc}") from exc
        finally:
            cur.close()

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        conn = self._connection()
        cur = conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            cur.close()
            raise StoreUnavailableError(f"SQLite database {self.path!r}: {exc}") from exc
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"SQLite database {self.path!r}: {exc}") from exc
            raise
        finally:
            cur.close()

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def _open(url: str) -> Database:
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise InvalidInputError(f"a SQLite URL looks like sqlite:///budgets.db, got {url!r}")
    rest, _, query = rest[1:].partition("?")
    path = unquote(rest)
    if not path or path == ":memory:":
        raise InvalidInputError(f"{url!r} names no database file")
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = set(options) - {"synchronous", "busy_timeout"}
    if unknown:
        raise InvalidInputError(f"unknown SQLite URL options {sorted(unknown)} in {url!r}")
    try:
        busy = int(options.get("busy_timeout", "30000"))
    except ValueError:
        raise InvalidInputError(f"busy_timeout must be milliseconds in {url!r}") from None
    return SqliteDatabase(path, options.get("synchronous", "NORMAL"), busy)


@register
class SqliteStore(SqlStore):
    """One project's budgets in a SQLite file; see the module docstring."""

    schemes = ("sqlite", "sqlite3")
    databases = SharedDatabases(_open)
    label = "SQLite"

    def __repr__(self) -> str:
        path = self.db.path if isinstance(self.db, SqliteDatabase) else "?"
        return f"SqliteStore({path!r}, project={self.project!r})"
