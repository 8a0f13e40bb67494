"""Budgets in a SQL database: the logic SQLite and PostgreSQL share.

Two tables hold every project of a database:

- ``bm_budgets``: one row per (project, user) with the record's fields; money is exact
  (``NUMERIC`` in PostgreSQL, decimal text in SQLite), never a float.
- ``bm_charge_keys``: one fixed-size row per keyed charge applied within the idempotency window
  (24 hours by default): a digest of (project, key), a digest of the request, and when it was
  applied. A retried charge is applied at most once and answered with the user's record as it
  is now; rows older than the window are ignored and pruned, so the table stays bounded by the
  charge rate times the window, whatever the requests carry.

Every change is a read-modify-write inside one database transaction that holds the row (or the
database) for writing, applying the same pure ledger functions as every other store
(:mod:`budget_manager.records`).
"""

from __future__ import annotations

import hashlib
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

from .. import names
from ..errors import InvalidInputError, UnknownUserError
from ..records import MAX_MODELS, UserRecord, from_json, loads
from .base import BudgetStore, charge_change

#: How long an idempotency key is remembered by default (seconds).
IDEMPOTENCY_TTL = 86_400.0
#: Expired idempotency rows are pruned once every this many keyed charges on a database.
_PRUNE_EVERY = 1000
_DIGEST_BYTES = 16

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

    #: The dialect's names for money, float and byte-string columns, the ``FOR UPDATE`` row lock
    #: (if any), and options for a table keyed by a digest.
    money_type: ClassVar[str] = "TEXT"
    float_type: ClassVar[str] = "DOUBLE PRECISION"
    bytes_type: ClassVar[str] = "BYTEA"
    lock_rows: ClassVar[str] = ""
    keyed_table_options: ClassVar[str] = ""

    def __init__(self) -> None:
        self.users_of = 0  # stores open on this database
        self._keyed_charges = 0
        self._count_lock = threading.Lock()

    def prune_due(self) -> bool:
        """Count one keyed charge; whether expired idempotency rows should be pruned now."""
        with self._count_lock:
            self._keyed_charges += 1
            return self._keyed_charges % _PRUNE_EVERY == 1

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
        m, f, b = self.money_type, self.float_type, self.bytes_type
        return [
            "CREATE TABLE IF NOT EXISTS bm_budgets ("
            " project TEXT NOT NULL, user_id TEXT NOT NULL,"
            f" total_budget {m} NOT NULL, current_cost {m} NOT NULL,"
            " model_cost TEXT, period TEXT, duration TEXT,"
            f" created_at {f}, last_updated_at {f}, extra TEXT,"
            " PRIMARY KEY (project, user_id))",
            "CREATE TABLE IF NOT EXISTS bm_charge_keys ("
            f" id {b} NOT NULL PRIMARY KEY, request {b} NOT NULL, created_at {f} NOT NULL)"
            f"{self.keyed_table_options}",
            "CREATE INDEX IF NOT EXISTS bm_charge_keys_age ON bm_charge_keys (created_at)",
            # The first release kept a whole record per key here, without bound: superseded.
            "DROP TABLE IF EXISTS bm_idempotency",
        ]


class SqlStore(BudgetStore):
    """One project's budgets in a :class:`Database`."""

    idempotent = True
    #: the databases a subclass opens, shared by its stores; and its name in messages
    databases: ClassVar[SharedDatabases]
    label: ClassVar[str] = "SQL"

    @classmethod
    def from_url(
        cls,
        url: str,
        project: str,
        *,
        max_models: int = MAX_MODELS,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
        **options: Any,
    ) -> SqlStore:
        """Options: ``max_models``, the cap on distinct models in a budget's period (100), and
        ``idempotency_ttl``, how long a charge's idempotency key is remembered (86400 s)."""
        if options:
            raise InvalidInputError(f"unknown {cls.label} store options: {sorted(options)}")
        names.check(project, "project")
        db, release = cls.databases.acquire(url)
        return cls(db, project, release, max_models=max_models, idempotency_ttl=idempotency_ttl)

    def __init__(
        self,
        db: Database,
        project: str,
        release: Callable[[], None],
        *,
        max_models: int = MAX_MODELS,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
    ) -> None:
        self.project = names.check(project, "project")
        if isinstance(max_models, bool) or not isinstance(max_models, int) or max_models < 1:
            raise InvalidInputError(
                f"max_models must be a positive integer, got {max_models!r}", field="max_models"
            )
        if isinstance(idempotency_ttl, bool) or not (
            isinstance(idempotency_ttl, (int, float)) and 0 < idempotency_ttl < float("inf")
        ):
            raise InvalidInputError(
                f"idempotency_ttl must be a positive number of seconds, got {idempotency_ttl!r}",
                field="idempotency_ttl",
            )
        self.db = db
        self.max_models = max_models
        self.idempotency_ttl = float(idempotency_ttl)
        self._release = release
        self._closed = False

    def sibling(self, project: str) -> SqlStore:
        """The store of ``project`` on the same database with the same settings. It shares this
        store's connections and holds nothing of its own: closing it releases nothing."""
        return type(self)(
            self.db,
            project,
            _nothing,
            max_models=self.max_models,
            idempotency_ttl=self.idempotency_ttl,
        )

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
        names.check(user, "user")
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
        names.check(user, "user")
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
        change = charge_change(user, model, amount, now, within_budget, self.max_models)
        if idempotency_key is None:
            return self.update(user, change)
        names.check(idempotency_key, "idempotency_key", names.MAX_KEY)
        key = _digest(self.project, idempotency_key)
        request = _digest(user, model, str(amount), within_budget)
        applied_at = time.time()
        with self.db.write() as cur:
            record = self._apply_once(cur, user, key, request, applied_at, change)
        if self.db.prune_due():
            self.prune_idempotency_keys()
        return record

    def _apply_once(
        self,
        cur: Cursor,
        user: str,
        key: bytes,
        request: bytes,
        applied_at: float,
        change: Callable[[UserRecord], None],
    ) -> UserRecord:
        """Apply ``change`` unless ``key`` was applied within the window: then the record as it
        is now (IdempotencyConflictError if the key came with another request)."""
        # Claim the key first (replacing a row past the window): a concurrent request with the
        # same key waits here for this one's commit, and then finds the key taken.
        cur.execute(
            self.db.sql(
                "INSERT INTO bm_charge_keys (id, request, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET"
                " request = excluded.request, created_at = excluded.created_at"
                " WHERE bm_charge_keys.created_at < ?"
            ),
            (key, request, applied_at, applied_at - self.idempotency_ttl),
        )
        if _rowcount(cur) == 1:
            return self._update_in(cur, user, change)
        cur.execute(self.db.sql("SELECT request FROM bm_charge_keys WHERE id = ?"), (key,))
        if bytes(cur.fetchone()[0]) != request:
            raise IdempotencyConflictError(
                "idempotency_key was already used for another request", field="idempotency_key"
            )
        record = self._select(cur, user, lock=False)
        if record is None:  # applied, and the budget was deleted since
            raise UnknownUserError(user, self.project)
        return record

    def delete(self, user: str) -> bool:
        names.check(user, "user")
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
    def prune_idempotency_keys(self, older_than: float | None = None) -> int:
        """Forget the database's idempotency keys older than ``older_than`` seconds (default:
        this store's window); how many were forgotten."""
        age = self.idempotency_ttl if older_than is None else older_than
        with self.db.write() as cur:
            cur.execute(
                self.db.sql("DELETE FROM bm_charge_keys WHERE created_at < ?"),
                (time.time() - age,),
            )
            return _rowcount(cur)


def _digest(*parts: object) -> bytes:
    """A fixed-size digest of ``parts`` (which JSON keeps apart unambiguously)."""
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:_DIGEST_BYTES]


def _nothing() -> None:
    pass


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


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (drivers' messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__
