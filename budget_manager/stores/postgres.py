"""Budgets in PostgreSQL (``postgresql://user@host:5432/db``), the ``[postgres]`` extra.

Each ledger operation is one statement: a call of a server-side function
(``resources/postgres/ledger.sql``) that locks the rows it needs, checks, applies and answers in
one transaction, with no read-modify-write round trips. Connections come from a pool (psycopg 3)
in autocommit mode, so a call is also one round trip. Money is ``NUMERIC``: exact.
"""

from __future__ import annotations

import hashlib
import json
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from .. import history, ledger
from ..errors import (
    BudgetExceededError,
    HierarchyError,
    IdempotencyConflictError,
    InvalidInputError,
    StoreError,
    StoreUnavailableError,
    TooManyModelsError,
    UnknownHoldError,
    UnknownUserError,
)
from ..events import Alert
from ..history import DEFAULT_RETENTION, HistoryEvent
from ..ledger import Level, Outcome
from ..records import MAX_MODELS, HoldRecord, UserRecord, hold_to_json, loads
from .aio import AsyncBudgetStore
from .base import register
from .sql import (
    IDEMPOTENCY_TTL,
    Cursor,
    Database,
    Query,
    SharedDatabases,
    SqlStore,
    Statement,
    _nothing,
    one_line,
    redact_url,
)

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

# Any lock id will do, as long as it is always the same: it serialises schema creation.
_SCHEMA_LOCK = 0x6275646765740001
POOL_SIZE = 16
CONNECT_TIMEOUT = 10
#: Seconds a request waits for a pooled connection before the store is reported unavailable:
#: less than a hosted client's 10 s read timeout, so it gets an answer it can act on.
POOL_WAIT = 8.0


class PostgresDialect(Database):
    """How PostgreSQL takes statements and values (no connections: see the subclasses)."""

    dialect = "postgres"

    def __init__(self, url: str = "") -> None:
        super().__init__()
        self.url = url

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def money_param(self, amount: Decimal) -> Any:
        return amount

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values)

    def read(self) -> AbstractContextManager[Cursor]:  # pragma: no cover - not connected
        raise StoreError("not connected")

    def write(self) -> AbstractContextManager[Cursor]:  # pragma: no cover - not connected
        raise StoreError("not connected")

    def close(self) -> None:
        """Nothing to close."""


def install(url: str) -> None:
    """Check that ``url`` answers, and create the tables and functions unless this very version
    is installed already (DDL locks tables that other processes are using, so it runs only when
    something changed). StoreUnavailableError, with one clear line, when it does not answer."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise StoreError(
            "PostgreSQL stores need the [postgres] extra: pip install 'budget-manager[postgres]'"
        ) from exc
    dialect = PostgresDialect(url)
    scripts = dialect.script("schema") + dialect.script("ledger")
    version = hashlib.sha256(scripts.encode()).hexdigest()
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as conn, conn.cursor() as cur:
            if _installed(cur) == version:
                return
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if _installed(cur) == version:  # another process installed it meanwhile
                return
            cur.execute(dialect.script("schema"))
            cur.execute(dialect.script("ledger"))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS bm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            cur.execute(
                "INSERT INTO bm_meta (key, value) VALUES ('schema', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (version,),
            )
    except psycopg.OperationalError as exc:
        raise StoreUnavailableError(
            f"cannot connect to PostgreSQL at {redact_url(url)}: {one_line(exc)}"
        ) from exc


class PostgresDatabase(PostgresDialect):
    """A PostgreSQL database behind a pool of autocommit connections."""

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        super().__init__(url)
        install(url)
        from psycopg_pool import ConnectionPool

        self._cursors: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self.pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=POOL_WAIT,
            kwargs={"autocommit": True},
        )
        try:
            self.pool.open(wait=True, timeout=10.0)
        except Exception as exc:
            self.pool.close()
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {one_line(exc)}"
            ) from exc

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        with self.pool.connection() as conn, conn.cursor() as cur:
            yield cur

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def call(self, function: str, params: Sequence[Any]) -> Any:
        """``SELECT function(params)``: one statement, one transaction, its JSON answer."""
        with self.pool.connection() as conn:
            # One cursor per connection, kept: making one costs a third of a call's CPU.
            cur = self._cursors.get(conn)
            if cur is None or cur.closed:
                cur = self._cursors[conn] = conn.cursor()
            cur.execute(f"SELECT {function}", params)
            found = cur.fetchone()
        return loads(found[0])

    def close(self) -> None:
        self.pool.close()


def _installed(cur: Cursor) -> str | None:
    """The version of the tables and functions installed in the database, if any."""
    cur.execute("SELECT to_regclass('bm_meta') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT value FROM bm_meta WHERE key = 'schema'")
    found = cur.fetchone()
    return None if found is None else str(found[0])


def _open(url: str) -> Database:
    if url.lower().startswith("postgres://"):
        url = "postgresql://" + url.split("://", 1)[1]
    return PostgresDatabase(url)


#: A function call: its SQL (``name(%s, ...)``) and parameters.
FunctionCall = tuple[str, tuple[Any, ...]]

#: The functions' own SQLSTATEs, and the errors they mean.
_ERRORS: dict[str, type[Exception]] = {
    "BM001": UnknownUserError,
    "BM002": ledger.ChainChanged,
    "BM003": BudgetExceededError,
    "BM004": UnknownHoldError,
    "BM005": IdempotencyConflictError,
    "BM006": HierarchyError,
    "BM007": TooManyModelsError,
}


@register
class PostgresStore(SqlStore):
    """One project's budgets in PostgreSQL; see the module docstring."""

    schemes = ("postgresql", "postgres")
    databases = SharedDatabases(_open)
    label = "PostgreSQL"
    max_levels: ClassVar[int] = ledger.MAX_LEVELS

    @classmethod
    def backend_errors(
        cls,
    ) -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
        import psycopg
        from psycopg_pool import PoolTimeout

        return (psycopg.OperationalError, PoolTimeout), (psycopg.Error,)

    def __repr__(self) -> str:
        url = self.db.url if isinstance(self.db, PostgresDatabase) else "?"
        return f"PostgresStore({redact_url(url)!r}, project={self.project!r})"

    def _call(self, call: FunctionCall) -> Outcome:
        assert isinstance(self.db, PostgresDatabase)
        try:
            answer = self.db.call(*call)
        except Exception as exc:
            if not _is_ours(exc):
                raise  # translated by backend_errors
            raise _translated(exc) from None
        self.housekeeping()
        return self.outcome(answer)

    # -- the ledger operations: each one call of a function ----------------------------------------
    def put(self, user: str, record: UserRecord, now: float | None = None) -> UserRecord:
        outcome = self._call(self.put_call(user, record, now))
        assert outcome.record is not None
        return outcome.record

    def delete(self, user: str, now: float | None = None) -> bool:
        return not self._call(self.delete_call(user, now)).replayed

    def charge(
        self,
        levels: Sequence[Level],
        model: str | None,
        amount: Decimal,
        now: float,
        limit_check: bool = False,
        key: str | None = None,
        thresholds: Sequence[Decimal] = (),
        tokens: dict[str, int] | None = None,
    ) -> Outcome:
        return self._call(
            self.charge_call(levels, model, amount, now, limit_check, key, thresholds, tokens)
        )

    def hold(
        self,
        levels: Sequence[Level],
        hold_id: str,
        amount: Decimal,
        expires_at: float,
        now: float,
        model: str | None = None,
        limit_check: bool = True,
    ) -> Outcome:
        return self._call(
            self.hold_call(levels, hold_id, amount, expires_at, now, model, limit_check)
        )

    def settle(
        self,
        hold_id: str,
        amount: Decimal,
        model: str | None,
        thresholds: Sequence[Decimal] = (),
        known: HoldRecord | None = None,
        now: float | None = None,
        tokens: dict[str, int] | None = None,
    ) -> Outcome:
        return self._call(self.settle_call(hold_id, amount, model, thresholds, known, now, tokens))

    def release(self, hold_id: str, now: float | None = None) -> Outcome:
        return self._call(self.release_call(hold_id, now))

    def reset(self, user: str, now: float | None = None) -> Outcome:
        return self._call(self.reset_call(user, now))

    def roll(self, levels: Sequence[Level], now: float | None = None) -> Outcome:
        return self._call(self.roll_call(levels, now))

    # -- the calls, for the sync and the asyncio store alike ----------------------------------------
    def outcome(self, answer: dict[str, Any]) -> Outcome:
        """An operation's outcome from a function's answer (rows as arrays)."""
        row, hold = answer.get("row"), answer.get("hold")
        held = self.hold_of(hold) if hold else None
        return Outcome(
            self.record_of(held.user if held else "", row) if row else None,
            held,
            tuple(answer.get("rolled") or ()),
            tuple(
                Alert(u, float(f), float(spent), float(total), None if at is None else float(at))
                for u, f, spent, total, at in answer.get("alerts") or ()
            ),
            bool(answer.get("replayed")),
        )

    def put_call(self, user: str, record: UserRecord, now: float | None = None) -> FunctionCall:
        ledger.check_names(user, record)
        row = self.row(record)
        return (
            "bm_put(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                self.project,
                user,
                record.total_budget,
                row[3],  # period
                row[4],  # duration
                record.created_at,
                record.last_updated_at,
                row[7],  # extra
                record.parent,
                record.on_unknown_model,
                record.on_store_error,
                self.max_levels,
                record.period_end(),
                _now(now),
            ),
        )

    def delete_call(self, user: str, now: float | None = None) -> FunctionCall:
        return "bm_delete(%s, %s, %s)", (self.project, user, _now(now))

    def charge_call(
        self,
        levels: Sequence[Level],
        model: str | None,
        amount: Decimal,
        now: float,
        limit_check: bool = False,
        key: str | None = None,
        thresholds: Sequence[Decimal] = (),
        tokens: dict[str, int] | None = None,
    ) -> FunctionCall:
        key_id = request = None
        if key is not None:
            key_id = self.key_id(key)
            request = bytes.fromhex(ledger.request_fingerprint(levels[0][0], model, amount))
        return (
            "bm_charge(%s, %s::text[], %s::text[], %s::float8[], %s::float8[], %s::float8[],"
            " %s, %s, %s, %s, %s, %s, %s, %s::numeric[], %s, %s)",
            (
                self.project,
                *_windows(levels),
                model,
                amount,
                now,
                limit_check,
                key_id,
                request,
                now - self.idempotency_ttl,
                list(thresholds),
                self.max_models,
                _tokens(tokens),
            ),
        )

    def hold_call(
        self,
        levels: Sequence[Level],
        hold_id: str,
        amount: Decimal,
        expires_at: float,
        now: float,
        model: str | None = None,
        limit_check: bool = True,
    ) -> FunctionCall:
        return (
            "bm_hold(%s, %s::text[], %s::text[], %s::float8[], %s::float8[], %s::float8[],"
            " %s, %s, %s, %s, %s, %s)",
            (self.project, *_windows(levels), hold_id, amount, expires_at, now, model, limit_check),
        )

    def settle_call(
        self,
        hold_id: str,
        amount: Decimal,
        model: str | None,
        thresholds: Sequence[Decimal] = (),
        known: HoldRecord | None = None,
        now: float | None = None,
        tokens: dict[str, int] | None = None,
    ) -> FunctionCall:
        return (
            "bm_settle(%s, %s, %s, %s, %s::numeric[], %s, %s::jsonb, %s, %s)",
            (
                self.project,
                hold_id,
                amount,
                model,
                list(thresholds),
                self.max_models,
                None if known is None else hold_to_json(known),
                _now(now),
                _tokens(tokens),
            ),
        )

    def release_call(self, hold_id: str, now: float | None = None) -> FunctionCall:
        return "bm_release(%s, %s, %s)", (self.project, hold_id, _now(now))

    def reset_call(self, user: str, now: float | None = None) -> FunctionCall:
        return "bm_reset(%s, %s, %s)", (self.project, user, _now(now))

    def roll_call(self, levels: Sequence[Level], now: float | None = None) -> FunctionCall:
        return (
            "bm_roll(%s, %s::text[], %s::text[], %s::float8[], %s::float8[], %s::float8[], %s)",
            (self.project, *_windows(levels), _now(now)),
        )


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _tokens(tokens: dict[str, int] | None) -> str | None:
    return None if tokens is None else json.dumps(tokens)


def _windows(levels: Sequence[Level]) -> tuple[str, ...]:
    """The levels as the functions take them: one array per field, as array literals (psycopg's
    list dumpers cost more than the rest of a call's Python)."""
    return (
        _array(user for user, _ in levels),
        _array(w.period for _, w in levels),
        _array(w.anchor for _, w in levels),
        _array(w.start for _, w in levels),
        _array(w.end for _, w in levels),
    )


def _array(values: Iterable[str | float | None]) -> str:
    """A PostgreSQL array literal of text or float8 values (cast in the statement)."""
    return "{" + ",".join(_element(v) for v in values) + "}"


def _element(value: str | float | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_ours(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the functions' own errors."""
    return getattr(exc, "sqlstate", None) in _ERRORS


def _translated(exc: Any) -> Exception:
    """The library's error for a function's own SQLSTATE."""
    state, message = exc.sqlstate, exc.diag.message_primary or ""
    kind = _ERRORS[state]
    if kind is BudgetExceededError:
        detail = json.loads(exc.diag.message_detail or "{}")
        spent, held = Decimal(detail["spent"]), Decimal(detail["held"])
        budget = Decimal(detail["budget"])
        return BudgetExceededError(
            float(spent + held),
            float(budget),
            f"budget {message!r} would be exceeded (spent {spent}, held {held}) of {budget}",
            user=message,
        )
    if kind is UnknownUserError:
        return UnknownUserError(message)
    if kind is UnknownHoldError:
        return UnknownHoldError(message)
    if kind is TooManyModelsError:
        return ledger.too_many_models(message, int(exc.diag.message_detail or 0))
    return kind(message)


class AsyncPostgresDatabase:
    """A PostgreSQL database behind psycopg's asyncio pool of autocommit connections, opened on
    first use (in the event loop that uses it)."""

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        install(url)
        from psycopg_pool import AsyncConnectionPool

        self.url = url
        self.dialect = PostgresDialect(url)
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=POOL_WAIT,
            kwargs={"autocommit": True},
        )
        self._opened = False

    async def _ready(self) -> None:
        if not self._opened:
            self._opened = True
            try:
                await self.pool.open(wait=True, timeout=10.0)
            except Exception as exc:
                self._opened = False
                raise StoreUnavailableError(
                    f"cannot connect to PostgreSQL at {redact_url(self.url)}: {one_line(exc)}"
                ) from exc

    async def call(self, function: str, params: Sequence[Any]) -> Any:
        """``SELECT function(params)``: one statement, one transaction, its JSON answer."""
        await self._ready()
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT {function}", params)
            found = await cur.fetchone()
        assert found is not None
        return loads(found[0])

    async def read(self, query: Query) -> Any:
        await self._ready()
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.dialect.sql(query.sql), query.params)
            return query.decode(await cur.fetchall())

    async def write_all(self, statements: list[Statement]) -> None:
        """Run ``statements`` in one transaction."""
        await self._ready()
        async with self.pool.connection() as conn, conn.transaction():
            for sql, params in statements:
                await conn.execute(self.dialect.sql(sql), params)

    async def close(self) -> None:
        await self.pool.close()


class AsyncPostgresStore(AsyncBudgetStore):
    """One project's budgets in PostgreSQL, for asyncio: the same function calls as
    :class:`PostgresStore` (built by one of its kind, which holds no connection), awaited on an
    :class:`AsyncPostgresDatabase`."""

    @classmethod
    def backend_errors(
        cls,
    ) -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
        return PostgresStore.backend_errors()

    def __init__(
        self, db: AsyncPostgresDatabase, calls: PostgresStore, *, owns_db: bool = True
    ) -> None:
        self.db = db
        self.calls = calls
        self._owns_db = owns_db

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
    ) -> AsyncPostgresStore:
        if options:
            raise InvalidInputError(f"unknown PostgreSQL store options: {sorted(options)}")
        if url.lower().startswith("postgres://"):
            url = "postgresql://" + url.split("://", 1)[1]
        calls = PostgresStore(
            PostgresDialect(url),
            project,
            _nothing,
            max_models=max_models,
            idempotency_ttl=idempotency_ttl,
            history_retention=history.span(history_retention),
        )
        return cls(AsyncPostgresDatabase(url), calls)

    def sibling(self, project: str) -> AsyncPostgresStore:
        """The store of ``project`` on the same database (closing it closes nothing)."""
        return AsyncPostgresStore(self.db, self.calls.sibling(project), owns_db=False)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"AsyncPostgresStore({redact_url(self.db.url)!r}, project={self.calls.project!r})"

    async def _call(self, call: FunctionCall) -> Outcome:
        try:
            answer = await self.db.call(*call)
        except Exception as exc:
            if not _is_ours(exc):
                raise  # translated by backend_errors
            raise _translated(exc) from None
        if self.calls.db.prune_due():
            await self.db.write_all(self.calls.prune_statements(time.time()))
        return self.calls.outcome(answer)

    async def get(self, user: str) -> UserRecord | None:
        found: UserRecord | None = await self.db.read(self.calls.get_query(user))
        return found

    async def users(self) -> list[str]:
        found: list[str] = await self.db.read(self.calls.users_query())
        return found

    async def records(self) -> dict[str, UserRecord]:
        found: dict[str, UserRecord] = await self.db.read(self.calls.records_query())
        return found

    async def projects(self) -> list[str]:
        """Every project of the database with at least one budget, sorted."""
        found: list[str] = await self.db.read(self.calls.projects_query())
        return found

    async def holds(self, user: str | None = None) -> list[HoldRecord]:
        found: list[HoldRecord] = await self.db.read(self.calls.holds_query(user))
        return found

    async def put(self, user: str, record: UserRecord, now: float | None = None) -> UserRecord:
        outcome = await self._call(self.calls.put_call(user, record, now))
        assert outcome.record is not None
        return outcome.record

    async def delete(self, user: str, now: float | None = None) -> bool:
        return not (await self._call(self.calls.delete_call(user, now))).replayed

    async def replace_all(self, records: dict[str, UserRecord]) -> None:
        ledger.check_forest(records)
        await self.db.write_all(self.calls.replace_statements(records))

    async def charge(self, *args: Any) -> Outcome:
        return await self._call(self.calls.charge_call(*args))

    async def hold(self, *args: Any) -> Outcome:
        return await self._call(self.calls.hold_call(*args))

    async def settle(self, *args: Any) -> Outcome:
        return await self._call(self.calls.settle_call(*args))

    async def release(self, hold_id: str, now: float | None = None) -> Outcome:
        return await self._call(self.calls.release_call(hold_id, now))

    async def reset(self, user: str, now: float | None = None) -> Outcome:
        return await self._call(self.calls.reset_call(user, now))

    async def roll(self, levels: Sequence[Level], now: float | None = None) -> Outcome:
        return await self._call(self.calls.roll_call(levels, now))

    async def history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HistoryEvent]:
        query = self.calls.history_query(user, model, since, until, limit)
        found: list[HistoryEvent] = await self.db.read(query)
        return found

    async def close(self) -> None:
        if self._owns_db:
            await self.db.close()
