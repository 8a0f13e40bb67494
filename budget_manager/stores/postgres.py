"""Budgets in PostgreSQL (``postgresql://user@host:5432/db``), the ``[postgres]`` extra.

Connections come from a pool (psycopg 3). A change locks the user's row (``SELECT ... FOR
UPDATE``) inside a transaction, so concurrent changes from any number of processes and machines
queue on that row and none is lost. Money is ``NUMERIC``: exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import StoreError, StoreUnavailableError
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
    """A PostgreSQL database behind a connection pool."""

    money_type = "NUMERIC"
    float_type = "DOUBLE PRECISION"
    lock_rows = " FOR UPDATE"

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        super().__init__()
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise StoreError(
                "PostgreSQL stores need the [postgres] extra: pip install 'budget-manager[postgres]'"
            ) from exc
        self._errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self._operational: tuple[type[BaseException], ...] = (
            psycopg.OperationalError,
            psycopg.errors.ConnectionTimeout,
        )
        self.url = url
        try:  # one plain connection first: its error says what is wrong, at once
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT).close()
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {one_line(exc)}"
            ) from exc
        self.pool: ConnectionPool[Any] = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, timeout=POOL_WAIT
        )
        try:
            self.pool.open(wait=True, timeout=10.0)
        except Exception as exc:
            self.pool.close()
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {one_line(exc)}"
            ) from exc
        with self.write() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in self.schema():
                cur.execute(statement)

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def money_param(self, amount: Decimal) -> Any:
        return amount

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        with self.write() as cur:
            yield cur

    @contextmanager
    def write(self) -> Iterator[Cursor]:
        try:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur
        except self._operational as exc:
            raise StoreUnavailableError(f"PostgreSQL at {redact_url(self.url)}: {exc}") from exc
        except self._errors as exc:
            raise StoreError(f"PostgreSQL at {redact_url(self.url)}: {exc}") from exc

    def close(self) -> None:
        self.pool.close()


def _open(url: str) -> Database:
    if url.lower().startswith("postgres://"):
        url = "postgresql://" + url.split("://", 1)[1]
    return PostgresDatabase(url)


@register
class PostgresStore(SqlStore):
    """One project's budgets in PostgreSQL; see the module docstring."""

    schemes = ("postgresql", "postgres")
    databases = SharedDatabases(_open)
    label = "PostgreSQL"

    def __repr__(self) -> str:
        url = self.db.url if isinstance(self.db, PostgresDatabase) else "?"
        return f"PostgresStore({redact_url(url)!r}, project={self.project!r})"
