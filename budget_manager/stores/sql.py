"""Budgets in a SQL database: what SQLite and PostgreSQL share (connections by URL, the tables,
rows to records and back, the reads).

Four tables hold every project of a database:

- ``bm_budgets``: one row per (project, user): the record's fields, its parent, the alert
  fractions announced this period and its policies; money is exact (``NUMERIC`` in PostgreSQL,
  decimal text in SQLite), never a float.
- ``bm_holds``: one row per hold, kept a day after it ends (so a late or repeated settle answers
  correctly), with the budgets it holds against and each one's period start.
- ``bm_hold_levels``: one row per open hold and budget it holds against: what a limit check sums.
- ``bm_charge_keys``: one fixed-size row per keyed charge within the idempotency window (24
  hours by default): a digest of (project, key), a digest of the request, and when it was
  applied. A repeated key is applied once; the table stays bounded whatever requests carry.
- ``bm_events``: the history, one row per change, written in the change's transaction and kept
  for the retention (90 days by default).

How each ledger operation runs atomically is the dialect's business: SQLite runs the Python
rules (:mod:`budget_manager.ledger`) inside one ``BEGIN IMMEDIATE`` transaction; PostgreSQL calls
a server-side function per operation (``resources/postgres/ledger.sql``).
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
from importlib import resources
from typing import Any, ClassVar, NamedTuple, Protocol
from urllib.parse import urlsplit, urlunsplit

from .. import history, ledger, names
from ..errors import InvalidInputError
from ..history import DEFAULT_RETENTION, HistoryEvent
from ..records import MAX_MODELS, HoldRecord, UserRecord, from_json, loads
from .base import BudgetStore
from .memory import HOLD_RETENTION

#: How long an idempotency key is remembered by default (seconds).
IDEMPOTENCY_TTL = 86_400.0
#: Housekeeping (expired keys, long-ended holds) runs once every this many changes per database.
_PRUNE_EVERY = 1000
_DIGEST_BYTES = 16

COLUMNS = (
    "total_budget, current_cost, model_cost, period, duration, created_at, last_updated_at, "
    "extra, parent, fired, on_unknown_model, on_store_error"
)
HOLD_COLUMNS = (
    "hold_id, user_id, amount, level_users, level_starts, expires_at, created_at, model, "
    "state, settled"
)
UPSERT = (
    f"INSERT INTO bm_budgets (project, user_id, {COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (project, user_id) DO UPDATE SET"
    " total_budget = excluded.total_budget, current_cost = excluded.current_cost,"
    " model_cost = excluded.model_cost, period = excluded.period,"
    " duration = excluded.duration, created_at = excluded.created_at,"
    " last_updated_at = excluded.last_updated_at, extra = excluded.extra,"
    " parent = excluded.parent, fired = excluded.fired,"
    " on_unknown_model = excluded.on_unknown_model, on_store_error = excluded.on_store_error"
)
EVENT_COLUMNS = "at, kind, user_id, model, cost, amount, tokens, hold_id, window_start, window_end"
#: One statement with its parameters (``?`` placeholders).
Statement = tuple[str, tuple[Any, ...]]


class Query(NamedTuple):
    """A read: its SQL (``?`` placeholders), parameters, and how its rows become the answer."""

    sql: str
    params: tuple[Any, ...]
    decode: Callable[[list[Any]], Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the stores use."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database(ABC):
    """Connections to one database, shared by the stores of all its projects."""

    #: the folder of the dialect's SQL files under ``budget_manager/resources``
    dialect: ClassVar[str]

    def __init__(self) -> None:
        self.users_of = 0  # stores open on this database
        self._changes = 0
        self._count_lock = threading.Lock()

    def prune_due(self) -> bool:
        """Count one change; whether housekeeping should run now."""
        with self._count_lock:
            self._changes += 1
            return self._changes % _PRUNE_EVERY == 1

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

    def list_param(self, values: Sequence[Any]) -> Any:
        """How a list (a hold's levels) is stored: a JSON array here, a real array in PostgreSQL."""
        return json.dumps(list(values), ensure_ascii=False)

    def list_value(self, stored: Any) -> list[Any]:
        """A list as :meth:`list_param` stored it."""
        return list(json.loads(stored)) if isinstance(stored, str) else list(stored)

    def script(self, name: str) -> str:
        """The text of ``resources/<dialect>/<name>.sql``."""
        folder = resources.files("budget_manager").joinpath("resources").joinpath(self.dialect)
        return folder.joinpath(f"{name}.sql").read_text(encoding="utf-8")


class SqlStore(BudgetStore):
    """One project's budgets in a :class:`Database`: the reads and the settings every dialect
    shares."""

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
        history_retention: float | str = DEFAULT_RETENTION,
        **options: Any,
    ) -> SqlStore:
        """Options: ``max_models``, the cap on distinct models in a budget's period (100);
        ``idempotency_ttl``, how long a charge's idempotency key is remembered (86400 s); and
        ``history_retention``, how long history events are kept (seconds or a span such as
        ``"90d"``; 90 days)."""
        if options:
            raise InvalidInputError(f"unknown {cls.label} store options: {sorted(options)}")
        names.check(project, "project")
        retention = history.span(history_retention)
        db, release = cls.databases.acquire(url)
        return cls(
            db,
            project,
            release,
            max_models=max_models,
            idempotency_ttl=idempotency_ttl,
            history_retention=retention,
        )

    def __init__(
        self,
        db: Database,
        project: str,
        release: Callable[[], None],
        *,
        max_models: int = MAX_MODELS,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
        history_retention: float = DEFAULT_RETENTION,
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
        self.history_retention = float(history_retention)
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
            history_retention=self.history_retention,
        )

    # -- rows ------------------------------------------------------------------------------------
    def row(self, record: UserRecord) -> tuple[Any, ...]:
        """The columns of :data:`COLUMNS` for ``record``."""
        model_cost = (
            json.dumps({m: str(c) for m, c in record.model_cost.items()}, ensure_ascii=False)
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
            json.dumps(record.extra, default=_plain, ensure_ascii=False) if record.extra else None,
            record.parent,
            ",".join(str(f) for f in record.fired) or None,
            record.on_unknown_model,
            record.on_store_error,
        )

    @staticmethod
    def record_of(user: str, row: Sequence[Any]) -> UserRecord:
        """The record a row of :data:`COLUMNS` holds."""
        total, spent, model_cost, period, duration, created, updated, extra = row[:8]
        parent, fired, unknown_model, store_error = row[8:12]
        data: dict[str, Any] = loads(extra) if extra else {}
        data["total_budget"] = Decimal(str(total))
        data["current_cost"] = Decimal(str(spent))
        if model_cost:
            costs = json.loads(model_cost) if isinstance(model_cost, str) else model_cost
            data["model_cost"] = {m: Decimal(str(c)) for m, c in costs.items()}
        if period is not None:
            data["period"] = period
            data["duration"] = json.loads(duration) if duration is not None else None
            data["created_at"] = created
            data["last_updated_at"] = updated
        data["parent"] = parent
        data["alerts_fired"] = [Decimal(f) for f in fired.split(",")] if fired else None
        data["on_unknown_model"] = unknown_model
        data["on_store_error"] = store_error
        return from_json(user, data)

    def hold_of(self, row: Sequence[Any]) -> HoldRecord:
        """The hold a row of :data:`HOLD_COLUMNS` holds."""
        hold_id, user, amount, users, starts, expires, created, model, state, settled = row
        levels = zip(self.db.list_value(users), self.db.list_value(starts), strict=True)
        return HoldRecord(
            hold_id=hold_id,
            user=user,
            amount=Decimal(str(amount)),
            levels=tuple((str(u), None if s is None else float(s)) for u, s in levels),
            expires_at=float(expires),
            created_at=float(created),
            model=model,
            state=state,
            settled=None if settled is None else Decimal(str(settled)),
        )

    def event_row(self, event: HistoryEvent) -> tuple[Any, ...]:
        """The columns of :data:`EVENT_COLUMNS` for ``event`` (after the project)."""
        money = self.db.money_param
        return (
            self.project,
            event.time,
            event.kind,
            event.user,
            event.model,
            money(event.cost),
            None if event.amount is None else money(event.amount),
            None if event.tokens is None else json.dumps(event.tokens),
            event.hold_id,
            event.window_start,
            event.window_end,
        )

    @staticmethod
    def event_of(row: Sequence[Any]) -> HistoryEvent:
        """The event a row of :data:`EVENT_COLUMNS` holds."""
        at, kind, user, model, cost, amount, tokens, hold_id, start, end = row
        return HistoryEvent(
            float(at),
            kind,
            user,
            model,
            Decimal(str(cost)),
            None if amount is None else Decimal(str(amount)),
            (json.loads(tokens) if isinstance(tokens, str) else tokens) if tokens else None,
            hold_id,
            None if start is None else float(start),
            None if end is None else float(end),
        )

    def select(self, cur: Cursor, user: str) -> UserRecord | None:
        """The user's record."""
        cur.execute(
            self.db.sql(f"SELECT {COLUMNS} FROM bm_budgets WHERE project = ? AND user_id = ?"),
            (self.project, user),
        )
        found = cur.fetchone()
        return None if found is None else self.record_of(user, found)

    def upsert(self, cur: Cursor, user: str, record: UserRecord) -> None:
        """Write the user's whole record."""
        cur.execute(self.db.sql(UPSERT), (self.project, user, *self.row(record)))

    def replace_statements(self, records: dict[str, UserRecord]) -> list[Statement]:
        """What makes ``records`` the whole user dict, in one transaction."""
        found: list[Statement] = [("DELETE FROM bm_budgets WHERE project = ?", (self.project,))]
        found += [(UPSERT, (self.project, u, *self.row(r))) for u, r in records.items()]
        return found

    def prune_statements(self, now: float) -> list[Statement]:
        """What forgets the idempotency keys past the window, what expired holds held, and this
        project's holds that ended long ago (the first statement counts the keys)."""
        return [
            ("DELETE FROM bm_charge_keys WHERE created_at < ?", (now - self.idempotency_ttl,)),
            # an expired hold holds nothing: its rows only slow the sums down
            (
                "DELETE FROM bm_hold_levels WHERE project = ? AND expires_at < ?",
                (self.project, now),
            ),
            (
                "DELETE FROM bm_holds WHERE project = ? AND expires_at < ?",
                (self.project, now - HOLD_RETENTION),
            ),
            # the history's own clock: its newest event (tests and replays use other clocks)
            (
                "DELETE FROM bm_events WHERE project = ? AND at <"
                " (SELECT max(at) FROM bm_events WHERE project = ?) - ?",
                (self.project, self.project, self.history_retention),
            ),
        ]

    def key_id(self, key: str) -> bytes:
        """The fixed-size row id of one of this project's idempotency keys."""
        names.check(key, "idempotency_key", names.MAX_KEY)
        return _digest(self.project, key)

    # -- reads, as queries any executor runs -----------------------------------------------------
    def get_query(self, user: str) -> Query:
        names.check(user, "user")
        return Query(
            f"SELECT {COLUMNS} FROM bm_budgets WHERE project = ? AND user_id = ?",
            (self.project, user),
            lambda rows: self.record_of(user, rows[0]) if rows else None,
        )

    def users_query(self) -> Query:
        return Query(
            "SELECT user_id FROM bm_budgets WHERE project = ? ORDER BY user_id",
            (self.project,),
            lambda rows: [found[0] for found in rows],
        )

    def projects_query(self) -> Query:
        return Query(
            "SELECT DISTINCT project FROM bm_budgets",
            (),
            lambda rows: sorted(found[0] for found in rows),  # code point order on every database
        )

    def records_query(self) -> Query:
        return Query(
            f"SELECT user_id, {COLUMNS} FROM bm_budgets WHERE project = ? ORDER BY user_id",
            (self.project,),
            lambda rows: {found[0]: self.record_of(found[0], found[1:]) for found in rows},
        )

    def history_query(
        self,
        user: str | None,
        model: str | None,
        since: float | None,
        until: float | None,
        limit: int | None,
    ) -> Query:
        """The events that match, the latest ``limit`` of them, answered oldest first."""
        where: list[str] = ["project = ?"]
        params: list[Any] = [self.project]
        for condition, value in (
            ("user_id = ?", user),
            ("model = ?", model),
            ("at >= ?", since),
            ("at < ?", until),
        ):
            if value is not None:
                where.append(condition)
                params.append(value)
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM bm_events WHERE {' AND '.join(where)}"
            " ORDER BY at DESC, seq DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return Query(
            sql, tuple(params), lambda rows: [self.event_of(found) for found in reversed(rows)]
        )

    def holds_query(self, user: str | None) -> Query:
        if user is None:
            sql = f"SELECT {HOLD_COLUMNS} FROM bm_holds WHERE project = ? AND state = 'open'"
            params: tuple[Any, ...] = (self.project,)
        else:
            sql = (
                f"SELECT {_prefixed('h.', HOLD_COLUMNS)} FROM bm_hold_levels l"
                " JOIN bm_holds h ON h.project = l.project AND h.hold_id = l.hold_id"
                " WHERE l.project = ? AND l.level_user = ?"
            )
            params = (self.project, user)
        return Query(sql, params, lambda rows: [self.hold_of(found) for found in rows])

    def _read(self, query: Query) -> Any:
        with self.db.read() as cur:
            cur.execute(self.db.sql(query.sql), query.params)
            return query.decode(cur.fetchall())

    def get(self, user: str) -> UserRecord | None:
        found: UserRecord | None = self._read(self.get_query(user))
        return found

    def users(self) -> list[str]:
        found: list[str] = self._read(self.users_query())
        return found

    def records(self) -> dict[str, UserRecord]:
        found: dict[str, UserRecord] = self._read(self.records_query())
        return found

    def projects(self) -> list[str]:
        """Every project of the database with at least one budget, sorted."""
        found: list[str] = self._read(self.projects_query())
        return found

    def holds(self, user: str | None = None) -> list[HoldRecord]:
        found: list[HoldRecord] = self._read(self.holds_query(user))
        return found

    def history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HistoryEvent]:
        found: list[HistoryEvent] = self._read(self.history_query(user, model, since, until, limit))
        return found

    # -- whole dicts and housekeeping -------------------------------------------------------------
    def _replace(self, records: dict[str, UserRecord]) -> None:
        self._write_all(self.replace_statements(records))

    def _write_all(self, statements: list[Statement]) -> int:
        """Run ``statements`` in one transaction; the rows the first one changed."""
        with self.db.write() as cur:
            changed = 0
            for i, (sql, params) in enumerate(statements):
                cur.execute(self.db.sql(sql), params)
                if i == 0:
                    changed = rowcount(cur)
            return changed

    def replace_all(self, records: dict[str, UserRecord]) -> None:
        ledger.check_forest(records)
        self._replace(records)

    def housekeeping(self) -> None:
        """:meth:`prune`, once every :data:`_PRUNE_EVERY` changes on a database."""
        if self.db.prune_due():
            self.prune()

    def prune(self) -> int:
        """Forget the database's idempotency keys past the window and this project's holds
        that ended long ago; how many keys were forgotten."""
        return self._write_all(self.prune_statements(time.time()))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()


def statements(script: str) -> list[str]:
    """The statements of a SQL script without functions (its ``--`` comments dropped)."""
    text = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def _prefixed(prefix: str, columns: str) -> str:
    return ", ".join(prefix + c.strip() for c in columns.split(","))


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


def rowcount(cur: Cursor) -> int:
    """Rows the cursor's last statement changed (0 when the driver does not say)."""
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
