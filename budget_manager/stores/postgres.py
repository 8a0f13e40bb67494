"""Budgets in PostgreSQL (``postgresql://user@host:5432/db``), the ``[postgres]`` extra.

Each ledger operation is one statement: a call of a server-side function
(``resources/postgres/ledger.sql``) that locks the rows it needs, checks, applies and answers in
one transaction, with no read-modify-write round trips. Connections come from a pool (psycopg 3)
in autocommit mode, so a call is also one round trip. Money is ``NUMERIC``: exact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from .. import ledger
from ..errors import (
    BudgetExceededError,
    HierarchyError,
    IdempotencyConflictError,
    StoreError,
    StoreUnavailableError,
    TooManyModelsError,
    UnknownHoldError,
    UnknownUserError,
)
from ..events import Alert
from ..ledger import Level, Outcome
from ..records import HoldRecord, UserRecord, from_json, hold_from_json, hold_to_json, loads
from .base import register
from .sql import Cursor, Database, SharedDatabases, SqlStore, one_line, redact_url

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

# Any lock id will do, as long as it is always the same: it serialises schema creation.
_SCHEMA_LOCK = 0x6275646765740001
POOL_SIZE = 16
CONNECT_TIMEOUT = 10
#: Seconds a request waits for a pooled connection before the store is reported unavailable:
#: less than a hosted client's 10 s read timeout, so it gets an answer it can act on.
POOL_WAIT = 8.0


class PostgresDatabase(Database):
    """A PostgreSQL database behind a pool of autocommit connections."""

    dialect = "postgres"

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        super().__init__()
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise StoreError(
                "PostgreSQL stores need the [postgres] extra: pip install 'budget-manager[postgres]'"
            ) from exc
        self.url = url
        try:  # one plain connection first: its error says what is wrong, at once
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT).close()
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {one_line(exc)}"
            ) from exc
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
        self._install()

    def _install(self) -> None:
        """Create the tables and functions, unless this very version is installed already: DDL
        locks tables that other processes are using, so it runs only when something changed."""
        scripts = self.script("schema") + self.script("ledger")
        version = hashlib.sha256(scripts.encode()).hexdigest()
        with self.write() as cur:
            if _installed(cur) == version:
                return
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if _installed(cur) == version:  # another process installed it meanwhile
                return
            cur.execute(self.script("schema"))
            cur.execute(self.script("ledger"))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS bm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            cur.execute(
                "INSERT INTO bm_meta (key, value) VALUES ('schema', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (version,),
            )

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def money_param(self, amount: Decimal) -> Any:
        return amount

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values)

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
            found = conn.execute(f"SELECT {function}", params).fetchone()
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

    def _call(self, function: str, params: Sequence[Any]) -> Outcome:
        import psycopg

        assert isinstance(self.db, PostgresDatabase)
        try:
            answer = self.db.call(function, params)
        except psycopg.Error as exc:
            if exc.sqlstate not in _ERRORS:
                raise  # translated by backend_errors
            raise _translated(exc) from None
        self.housekeeping()
        return _outcome(answer)

    # -- the ledger operations --------------------------------------------------------------------
    def put(self, user: str, record: UserRecord) -> UserRecord:
        ledger.check_names(user, record)
        row = self.row(record)
        outcome = self._call(
            "bm_put(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
            ),
        )
        assert outcome.record is not None
        return outcome.record

    def delete(self, user: str) -> bool:
        return not self._call("bm_delete(%s, %s)", (self.project, user)).replayed

    def charge(
        self,
        levels: Sequence[Level],
        model: str | None,
        amount: Decimal,
        now: float,
        limit_check: bool = False,
        key: str | None = None,
        thresholds: Sequence[Decimal] = (),
    ) -> Outcome:
        key_id = request = None
        if key is not None:
            key_id = self.key_id(key)
            request = bytes.fromhex(ledger.request_fingerprint(levels[0][0], model, amount))
        return self._call(
            "bm_charge(%s, %s::text[], %s::text[], %s::float8[], %s::float8[], %s::float8[],"
            " %s, %s, %s, %s, %s, %s, %s, %s::numeric[], %s)",
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
            ),
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
            "bm_hold(%s, %s::text[], %s::text[], %s::float8[], %s::float8[], %s::float8[],"
            " %s, %s, %s, %s, %s, %s)",
            (self.project, *_windows(levels), hold_id, amount, expires_at, now, model, limit_check),
        )

    def settle(
        self,
        hold_id: str,
        amount: Decimal,
        model: str | None,
        thresholds: Sequence[Decimal] = (),
        known: HoldRecord | None = None,
    ) -> Outcome:
        return self._call(
            "bm_settle(%s, %s, %s, %s, %s::numeric[], %s, %s::jsonb)",
            (
                self.project,
                hold_id,
                amount,
                model,
                list(thresholds),
                self.max_models,
                None if known is None else hold_to_json(known),
            ),
        )

    def release(self, hold_id: str) -> Outcome:
        return self._call("bm_release(%s, %s)", (self.project, hold_id))

    def reset(self, user: str) -> Outcome:
        return self._call("bm_reset(%s, %s)", (self.project, user))

    def roll(self, levels: Sequence[Level]) -> Outcome:
        users, periods, anchors, starts, _ = _windows(levels)
        return self._call(
            "bm_roll(%s, %s::text[], %s::text[], %s::float8[], %s::float8[])",
            (self.project, users, periods, anchors, starts),
        )


def _windows(levels: Sequence[Level]) -> tuple[list[Any], ...]:
    """The levels as the functions take them: one array per field."""
    return (
        [user for user, _ in levels],
        [w.period for _, w in levels],
        [w.anchor for _, w in levels],
        [w.start for _, w in levels],
        [w.end for _, w in levels],
    )


def _outcome(answer: dict[str, Any]) -> Outcome:
    record = answer.get("record")
    hold = answer.get("hold")
    user = hold["user"] if hold else None
    return Outcome(
        from_json(user or "", record) if record else None,
        hold_from_json(hold) if hold else None,
        tuple(answer.get("rolled") or ()),
        tuple(
            Alert(u, float(f), float(spent), float(total), None if start is None else float(start))
            for u, f, spent, total, start in answer.get("alerts") or ()
        ),
        bool(answer.get("replayed")),
    )


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
