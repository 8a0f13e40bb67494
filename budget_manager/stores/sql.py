"""Budgets in a SQL database: the logic SQLite and PostgreSQL share.

Two tables hold every project of a database:

- ``bm_budgets``: one row per (project, user) with the record's fields; money is exact
  (``NUMERIC`` in PostgreSQL, decimal text in SQLite), never a float.
- ``bm_idempotency``: (project, key) of every keyed charge applied recently, with what it was
  asked to do and the record it left, so a retried charge is applied at most once.

Every change is a read-modify-write inside one database transaction that holds the row (or the
database) for writing, applying the same pure ledger functions as every other store
(:mod:`budget_manager.records`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

from ..errors import InvalidInputError, UnknownUserError
from ..records import UserRecord, from_json, loads, to_json
from .base import BudgetStore, charge_change

#: How long an idempotency key is remembered (seconds).
IDEMPOTENCY_TTL = 7 * 86_400
_PRUNE_EVERY = 1000

COLUMNS = (
    "total_budget, current_cost, model_cost, period, duration, created_at, last_updated_at, extra"
)


class Cursor(Protocol):
    """The part of a DB-API cursor the stores use."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class IdempotencyConflictError(InvalidInputError):
    """An idempotency key was used again for a different request."""


class Database(ABC):
    """Connections to one database, shared by the stores of all its projects."""

    #: The dialect's name for money columns and for the ``FOR UPDATE`` row lock (if any).
    money_type: ClassVar[str] = "TEXT"
    float_type: ClassVar[str] = "DOUBLE PRECISION"
    lock_rows: ClassVar[str] = ""

    def __init__(self) -> None:
        self.users_of = 0  # stores open on this database

    @abstractmethod
    def read(self) -> AbstractContextManager[Cursor]:
        """A cursor for a consistent read."""

    @abstractmethod
    def write(self) -> AbstractContextManager[Cursor]:
        """A cursor inside a transaction that holds what it reads for writing; commits on success."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection."""

    def sql(self, statement: str) -> str:
        """``statement`` (written with ``?`` placeholders) in the driver's parameter style."""
        return statement

    def money_param(self, amount: Decimal) -> Any:
        """How an amount is passed to the driver."""
        return str(amount)

    def schema(self) -> list[str]:
        """Statements that create the tables if they are missing."""
        m, f = self.money_type, self.float_type
        return [
            "CREATE TABLE IF NOT EXISTS bm_budgets ("
            " project TEXT NOT NULL, user_id TEXT NOT NULL,"
            f" total_budget {m} NOT NULL, current_cost {m} NOT NULL,"
            " model_cost TEXT, period TEXT, duration TEXT,"
            f" created_at {f}, last_updated_at {f}, extra TEXT,"
            " PRIMARY KEY (project, user_id))",
            "CREATE TABLE IF NOT EXISTS bm_idempotency ("
            " project TEXT NOT NULL, key TEXT NOT NULL, request TEXT NOT NULL,"
            f" result TEXT NOT NULL, created_at {f} NOT NULL,"
            " PRIMARY KEY (project, key))",
            "CREATE INDEX IF NOT EXISTS bm_idempotency_age ON bm_idempotency (created_at)",
        ]


class SqlStore(BudgetStore):
    """One project's budgets in a :class:`Database`."""

    idempotent = True
    #: the databases a subclass opens, shared by its stores; and its name in messages
    databases: ClassVar[SharedDatabases]
    label: ClassVar[str] = "SQL"

    @classmethod
    def from_url(cls, url: str, project: str, **options: Any) -> SqlStore:
        if options:
            raise InvalidInputError(f"unknown {cls.label} store options: {sorted(options)}")
        db, release = cls.databases.acquire(url)
        return cls(db, project, release)

    def __init__(self, db: Database, project: str, release: Callable[[], None]) -> None:
        if not isinstance(project, str) or not project:
            raise InvalidInputError(f"project must be a non-empty string, got {project!r}")
        self.db = db
        self.project = project
        self._release = release
        self._closed = False
        self._charges = 0
        self._count_lock = threading.Lock()

    # -- rows ------------------------------------------------------------------------------------
    def _row(self, record: UserRecord) -> tuple[Any, ...]:
        model_cost = (
            json.dumps({m: str(c) for m, c in record.model_cost.items()})
            if record.model_cost
            else None
        )
        return (
            self.db.money_param(record.total_budget),
            self.db.money_param(record.current_cost),
            model_cost,
            record.period.name if record.period is not None else None,
            json.dumps(record.duration) if record.duration is not None else None,
            record.created_at,
            record.last_updated_at,
            json.dumps(record.extra, default=_plain) if record.extra else None,
        )

    @staticmethod
    def _record(user: str, row: Sequence[Any]) -> UserRecord:
        total, spent, model_cost, period, duration, created, updated, extra = row
        data: dict[str, Any] = loads(extra) if extra else {}
        data["total_budget"] = Decimal(str(total))
        data["current_cost"] = Decimal(str(spent))
        if model_cost:
            data["model_cost"] = {m: Decimal(c) for m, c in json.loads(model_cost).items()}
        if period is not None:
            data["period"] = period
            data["duration"] = json.loads(duration) if duration is not None else None
            data["created_at"] = created
            data["last_updated_at"] = updated
        return from_json(user, data)

    def _select(self, cur: Cursor, user: str, lock: bool) -> UserRecord | None:
        suffix = self.db.lock_rows if lock else ""
        cur.execute(
            self.db.sql(
                f"SELECT {COLUMNS} FROM bm_budgets WHERE project = ? AND user_id = ?{suffix}"
            ),
            (self.project, user),
        )
        row = cur.fetchone()
        return None if row is None else self._record(user, row)

    def _upsert(self, cur: Cursor, user: str, record: UserRecord) -> None:
        cur.execute(
            self.db.sql(
                f"INSERT INTO bm_budgets (project, user_id, {COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (project, user_id) DO UPDATE SET"
                " total_budget = excluded.total_budget, current_cost = excluded.current_cost,"
                " model_cost = excluded.model_cost, period = excluded.period,"
                " duration = excluded.duration, created_at = excluded.created_at,"
                " last_updated_at = excluded.last_updated_at, extra = excluded.extra"
            ),
            (self.project, user, *self._row(record)),
        )

    def _update_in(
        self, cur: Cursor, user: str, change: Callable[[UserRecord], None]
    ) -> UserRecord:
        record = self._select(cur, user, lock=True)
        if record is None:
            raise UnknownUserError(user, self.project)
        change(record)
        self._upsert(cur, user, record)
        return record

    # -- the store interface ---------------------------------------------------------------------
    def get(self, user: str) -> UserRecord | None:
        with self.db.read() as cur:
            return self._select(cur, user, lock=False)

    def users(self) -> list[str]:
        with self.db.read() as cur:
            cur.execute(
                self.db.sql("SELECT user_id FROM bm_budgets WHERE project = ? ORDER BY user_id"),
                (self.project,),
            )
            return [row[0] for row in cur.fetchall()]

    def records(self) -> dict[str, UserRecord]:
        with self.db.read() as cur:
            cur.execute(
                self.db.sql(
                    f"SELECT user_id, {COLUMNS} FROM bm_budgets WHERE project = ? ORDER BY user_id"
                ),
                (self.project,),
            )
            return {row[0]: self._record(row[0], row[1:]) for row in cur.fetchall()}

    def put(self, user: str, record: UserRecord) -> UserRecord:
        with self.db.write() as cur:
            self._upsert(cur, user, record)
        return record

    def update(self, user: str, change: Callable[[UserRecord], None]) -> UserRecord:
        with self.db.write() as cur:
            return self._update_in(cur, user, change)

    def charge(
        self,
        user: str,
        model: str | None,
        amount: Decimal,
        now: float,
        *,
        within_budget: bool = False,
        idempotency_key: str | None = None,
    ) -> UserRecord:
        change = charge_change(user, model, amount, now, within_budget)
        if idempotency_key is None:
            return self.update(user, change)
        request = json.dumps([user, model, str(amount)])
        with self.db.write() as cur:
            cur.execute(
                self.db.sql(
                    "SELECT request, result FROM bm_idempotency WHERE project = ? AND key = ?"
                ),
                (self.project, idempotency_key),
            )
            seen = cur.fetchone()
            if seen is not None:
                if seen[0] != request:
                    raise IdempotencyConflictError(
                        f"idempotency_key {idempotency_key!r} was already used for another request"
                    )
                return from_json(user, loads(seen[1]))
            record = self._update_in(cur, user, change)
            cur.execute(
                self.db.sql(
                    "INSERT INTO bm_idempotency (project, key, request, result, created_at)"
                    " VALUES (?, ?, ?, ?, ?)"
                ),
                (self.project, idempotency_key, request, to_json(record), time.time()),
            )
        self._maybe_prune()
        return record

    def delete(self, user: str) -> bool:
        with self.db.write() as cur:
            cur.execute(
                self.db.sql("DELETE FROM bm_budgets WHERE project = ? AND user_id = ?"),
                (self.project, user),
            )
            return bool(_rowcount(cur))

    def replace_all(self, records: dict[str, UserRecord]) -> None:
        with self.db.write() as cur:
            cur.execute(self.db.sql("DELETE FROM bm_budgets WHERE project = ?"), (self.project,))
            for user, record in records.items():
                self._upsert(cur, user, record)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    # -- housekeeping ----------------------------------------------------------------------------
    def _maybe_prune(self) -> None:
        with self._count_lock:
            self._charges += 1
            due = self._charges % _PRUNE_EVERY == 1
        if due:
            self.prune_idempotency_keys()

    def prune_idempotency_keys(self, older_than: float = IDEMPOTENCY_TTL) -> None:
        """Forget idempotency keys older than ``older_than`` seconds."""
        with self.db.write() as cur:
            cur.execute(
                self.db.sql("DELETE FROM bm_idempotency WHERE project = ? AND created_at < ?"),
                (self.project, time.time() - older_than),
            )


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _rowcount(cur: Cursor) -> int:
    count = getattr(cur, "rowcount", 0)
    return int(count) if isinstance(count, int) else 0


class SharedDatabases:
    """Databases by URL, opened once per process and closed when their last store closes."""

    def __init__(self, open_database: Callable[[str], Database]) -> None:
        self._open = open_database
        self._by_url: dict[tuple[int, str], Database] = {}
        self._lock = threading.Lock()

    def acquire(self, url: str) -> tuple[Database, Callable[[], None]]:
        """The database ``url`` names, and the function that releases it."""
        key = (os.getpid(), url)
        with self._lock:
            db = self._by_url.get(key)
            if db is None:
                db = self._open(url)
                self._by_url[key] = db
            db.users_of += 1

        def release() -> None:
            with self._lock:
                db.users_of -= 1
                if db.users_of == 0 and self._by_url.get(key) is db:
                    del self._by_url[key]
                    db.close()

        return db, release


def redact_url(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc))
