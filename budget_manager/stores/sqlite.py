"""Budgets in a SQLite database file (``sqlite:///budgets.db``), shared safely by processes.

The URL follows SQLAlchemy's form: ``sqlite:///relative/path.db`` or ``sqlite:////abs/path.db``.
Query options: ``synchronous`` (``NORMAL`` by default, ``FULL`` for power-loss durability of
every commit) and ``busy_timeout`` (milliseconds a writer waits for the lock; 30000).

The database runs in WAL mode: readers never block the writer, and with ``synchronous=NORMAL`` a
committed change survives the process being killed (the WAL is in the OS's hands); only a power
loss or OS crash can lose the last commits. Writes take the database lock up front
(``BEGIN IMMEDIATE``), so a read-modify-write never has to be retried: each ledger operation
runs the Python rules (:mod:`budget_manager.ledger`) over the rows inside one such transaction.
Threads of one process queue for it on a lock of their own rather than in SQLite's busy loop.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote

from ..errors import InvalidInputError, StoreError, StoreUnavailableError
from ..ledger import Changes, Outcome
from ..records import HoldRecord, UserRecord
from .base import register
from .python_ledger import PythonLedgerStore
from .sql import (
    EVENT_COLUMNS,
    HOLD_COLUMNS,
    Cursor,
    Database,
    SharedDatabases,
    SqlStore,
    _prefixed,
    statements,
)

#: Columns added to bm_budgets after the first release, with their types.
_LATER_COLUMNS = {"parent": "TEXT", "fired": "TEXT", "on_unknown_model": "TEXT"}
_LATER_COLUMNS["on_store_error"] = "TEXT"

_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


class SqliteDatabase(Database):
    """A SQLite file with one connection per thread (and per process)."""

    dialect = "sqlite"

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
        self._writer = threading.Lock()
        with self.write() as cur:
            for statement in statements(self.script("schema")):
                cur.execute(statement)
            cur.execute("PRAGMA table_info(bm_budgets)")
            present = {found[1] for found in cur.fetchall()}
            for column, kind in _LATER_COLUMNS.items():
                if column not in present:
                    cur.execute(f"ALTER TABLE bm_budgets ADD COLUMN {column} {kind}")
            cur.execute(
                "CREATE INDEX IF NOT EXISTS bm_budgets_parent ON bm_budgets (project, parent)"
                " WHERE parent IS NOT NULL"
            )

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
        with self._writer:
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


class SqlState:
    """The rows of one project as the ledger reads them, inside one write transaction; and the
    writes that persist its changes."""

    def __init__(self, store: SqlStore, cur: Cursor) -> None:
        self.store = store
        self.cur = cur
        self.project = store.project
        self._records: dict[str, UserRecord | None] = {}

    def record(self, user: str) -> UserRecord | None:
        if user not in self._records:
            self._records[user] = self.store.select(self.cur, user)
        return self._records[user]

    def hold(self, hold_id: str) -> HoldRecord | None:
        self.cur.execute(
            f"SELECT {HOLD_COLUMNS} FROM bm_holds WHERE project = ? AND hold_id = ?",
            (self.project, hold_id),
        )
        found = self.cur.fetchone()
        return None if found is None else self.store.hold_of(found)

    def holds_touching(self, user: str) -> list[HoldRecord]:
        self.cur.execute(
            f"SELECT {_prefixed('h.', HOLD_COLUMNS)} FROM bm_hold_levels l JOIN bm_holds h"
            " ON h.project = l.project AND h.hold_id = l.hold_id"
            " WHERE l.project = ? AND l.level_user = ?",
            (self.project, user),
        )
        return [self.store.hold_of(found) for found in self.cur.fetchall()]

    def children(self, user: str) -> Iterable[str]:
        self.cur.execute(
            "SELECT user_id FROM bm_budgets WHERE project = ? AND parent = ?", (self.project, user)
        )
        return [found[0] for found in self.cur.fetchall()]

    def seen(self, key: str) -> str | None:
        self.cur.execute(
            "SELECT request, created_at FROM bm_charge_keys WHERE id = ?", (self.store.key_id(key),)
        )
        found = self.cur.fetchone()
        if found is None or found[1] < time.time() - self.store.idempotency_ttl:
            return None
        return bytes(found[0]).hex()

    def persist(self, changes: Changes) -> None:
        """Write ``changes`` in this transaction."""
        cur, project = self.cur, self.project
        for user, record in changes.records.items():
            if record is None:
                cur.execute(
                    "DELETE FROM bm_budgets WHERE project = ? AND user_id = ?", (project, user)
                )
            else:
                self.store.upsert(cur, user, record)
        for hold in changes.holds.values():
            self._write_hold(hold)
        for event in changes.events:
            cur.execute(
                f"INSERT INTO bm_events (project, {EVENT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self.store.event_row(event),
            )
        if changes.key is not None:
            key, fingerprint = changes.key
            cur.execute(
                "INSERT INTO bm_charge_keys (id, request, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET"
                " request = excluded.request, created_at = excluded.created_at",
                (self.store.key_id(key), bytes.fromhex(fingerprint), time.time()),
            )

    def _write_hold(self, hold: HoldRecord) -> None:
        db = self.store.db
        users = [u for u, _ in hold.levels]
        self.cur.execute(
            f"INSERT INTO bm_holds (project, {HOLD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (project, hold_id) DO UPDATE SET state = excluded.state,"
            " settled = excluded.settled, model = excluded.model",
            (
                self.project,
                hold.hold_id,
                hold.user,
                str(hold.amount),
                db.list_param(users),
                db.list_param([s for _, s in hold.levels]),
                hold.expires_at,
                hold.created_at,
                hold.model,
                hold.state,
                None if hold.settled is None else str(hold.settled),
            ),
        )
        if hold.state == "open":
            for user in users:
                self.cur.execute(
                    "INSERT OR IGNORE INTO bm_hold_levels"
                    " (project, level_user, hold_id, amount, expires_at) VALUES (?, ?, ?, ?, ?)",
                    (self.project, user, hold.hold_id, str(hold.amount), hold.expires_at),
                )
        else:
            self.cur.execute(
                "DELETE FROM bm_hold_levels WHERE project = ? AND hold_id = ?",
                (self.project, hold.hold_id),
            )


@register
class SqliteStore(SqlStore, PythonLedgerStore):
    """One project's budgets in a SQLite file; see the module docstring."""

    schemes = ("sqlite", "sqlite3")
    databases = SharedDatabases(_open)
    label = "SQLite"

    def __repr__(self) -> str:
        path = self.db.path if isinstance(self.db, SqliteDatabase) else "?"
        return f"SqliteStore({path!r}, project={self.project!r})"

    def _apply(
        self, operation: Callable[..., tuple[Outcome, Changes | None]], *args: Any, **kwargs: Any
    ) -> Outcome:
        with self.db.write() as cur:
            state = SqlState(self, cur)
            outcome, changes = operation(state, *args, **kwargs)
            if changes is not None:
                state.persist(changes)
        self.housekeeping()
        return outcome
