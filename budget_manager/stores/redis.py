"""Budgets in Redis: ``redis://[user:password@]host:6379/0`` or ``rediss://`` (TLS), with the
``[redis]`` extra (redis-py). Many processes on many machines can share one Redis.

Every change is one Lua script (package resources under ``budget_manager/resources/redis``,
loaded once and run with EVALSHA) implementing the ledger's rules (:mod:`budget_manager.ledger`)
atomically inside Redis. The key layout, the money format and the replies are in
:mod:`.redis_codec`; this module only sends the calls.

URL options: ``?prefix=NAME`` starts every key name (default ``bm``), so several applications can
share a database; ``?cluster=true`` talks to a Redis Cluster (any node's address); the other query
options are redis-py's. Keyword options given to the store go to
``redis.Redis.from_url`` as well. Stores opened on the same URL and options in one process share
one connection pool.

A Redis that lost its data (restarted without persistence, flushed, evicted keys) is detected: a
project marker key this process saw before has vanished. Every call then raises
:class:`~budget_manager.errors.StoreError` instead of treating every user as new.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from decimal import Decimal
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import history, ledger, names
from ..errors import InvalidInputError, StoreError
from ..history import DEFAULT_RETENTION, HistoryEvent
from ..ledger import Level, Outcome
from ..records import MAX_MODELS, HoldRecord, UserRecord
from . import redis_codec as codec
from .aio import AsyncBudgetStore
from .base import BudgetStore, register
from .redis_scripts import scripts

T = TypeVar("T")
L = TypeVar("L", bound="RedisLedger")
P = ParamSpec("P")

#: Pauses before sending again a call whose connection failed (only calls that cannot apply
#: twice: everything but a charge without idempotency key and a delete).
RETRY_DELAYS = (0.0, 0.05, 0.25)
#: redis-py options unless the URL or the caller set them (seconds).
DEFAULTS: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
#: Most hold ids whose levels are remembered, so a release needs no read first.
LEVELS_CACHE = 10_000
#: Most history events a project's stream keeps by default (trimmed approximately).
HISTORY_CAP = 1_000_000


class _Server:
    """Connections to one Redis server, made from redis-py's connection settings for a URL.

    Idle connections wait on a stack (a list: ``append`` and ``pop`` are atomic), so a call
    takes one without a lock; a forked child starts with none of its parent's.
    """

    def __init__(self, url: str, options: dict[str, Any], cluster: bool = False) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise StoreError(
                "redis:// stores need redis-py: pip install 'budget-manager[redis]'"
            ) from None
        # No retries inside redis-py: a charge sent again after a lost reply could count twice.
        # The store sends again only what cannot apply twice (see RETRY_DELAYS).
        settings = {**DEFAULTS, "retry": Retry(NoBackoff(), 0), **options}
        self._cluster: Any = None
        if cluster:
            # redis-py's cluster client sends each script to the node owning its keys' slot (one
            # per project) and follows MOVED/ASK redirections while slots move.
            from redis.cluster import RedisCluster

            self._cluster = RedisCluster.from_url(url, **settings)
        try:
            pool = redis.ConnectionPool.from_url(url, **settings)
            self._make = functools.partial(pool.connection_class, **pool.connection_kwargs)
            first = self._make()  # refuses unknown options now; connects when first used
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"bad Redis URL or option for {_redact(url)!r}: {exc}"
            ) from None
        self.errors = redis.exceptions
        self._response_error = redis.exceptions.ResponseError
        self._idle: list[Any] = [first]
        self._pid = os.getpid()
        try:  # redis-py packs through hiredis too, after a pass over the arguments we need not
            from hiredis import pack_command
        except ImportError:
            self._pack: Callable[..., Any] | None = None
        else:
            self._pack = pack_command

    def call(self, *args: Any, check: bool = False) -> Any:
        """Send one command and read its reply. ``check``: first make sure an idle connection
        was not closed by the server meanwhile (so a failure means the command was not sent)."""
        if self._cluster is not None:
            return self._cluster.execute_command(*args)
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._make()
        try:
            if check and conn.can_read(timeout=0):
                conn.disconnect()  # closed by the server, or holding an unread reply
            pack = self._pack
            packed = [pack(args)] if pack is not None else conn.pack_command(*args)
            conn.send_packed_command(packed, check_health=False)
            return conn.read_response()
        except self._response_error:
            raise  # an error reply: the connection is fine
        except BaseException as exc:
            conn.disconnect()  # it reconnects when next used
            if isinstance(exc, (self.errors.ConnectionError, self.errors.TimeoutError)):
                # The server went away: the other idle connections are most likely dead too.
                stale, self._idle = self._idle, []
                for other in stale:
                    other.disconnect()
            raise
        finally:
            self._idle.append(conn)

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()


class _AsyncServer:
    """Connections to one Redis server for asyncio, made from ``redis.asyncio``'s connection
    settings for a URL: at most ``limit`` at once (tasks beyond wait their turn), commands packed
    by hiredis when it is installed, and no pool bookkeeping beyond a stack of idle ones."""

    def __init__(
        self, url: str, settings: dict[str, Any], cluster: bool, limit: int, aioredis: Any
    ) -> None:
        self._cluster: Any = None
        if cluster:
            from redis.asyncio.cluster import RedisCluster

            self._cluster = RedisCluster.from_url(url, **settings)
        pool = aioredis.ConnectionPool.from_url(url, **settings)
        self._make = functools.partial(pool.connection_class, **pool.connection_kwargs)
        self._make()  # refuses unknown options now
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(limit)
        self._response_error = aioredis.ResponseError
        try:
            from hiredis import pack_command
        except ImportError:  # pragma: no cover - depends on the installed extras
            self._pack: Callable[..., Any] | None = None
        else:
            self._pack = pack_command

    async def call(self, *args: Any) -> Any:
        if self._cluster is not None:
            return await self._cluster.execute_command(*args)
        async with self._slots:
            conn = self._idle.pop() if self._idle else self._make()
            try:
                packed = [self._pack(args)] if self._pack is not None else conn.pack_command(*args)
                await conn.send_packed_command(packed, check_health=False)
                return await conn.read_response()
            except self._response_error:
                raise  # an error reply: the connection is fine
            except BaseException:
                await conn.disconnect()  # it reconnects when next used
                raise
            finally:
                self._idle.append(conn)

    async def close(self) -> None:
        if self._cluster is not None:
            await self._cluster.aclose()
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect()


class _Shared:
    """Servers shared by the stores of one process, by URL and options; and the project markers
    this process has seen, by server and key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.servers: dict[str, tuple[_Server, int]] = {}
        self.markers: dict[tuple[str, str], bytes] = {}

    def acquire(self, url: str, options: dict[str, Any], cluster: bool) -> tuple[str, _Server]:
        ident = url + "\0" + repr(sorted(options.items())) + "\0" + repr(cluster)
        with self.lock:
            found = self.servers.get(ident)
            if found is None:
                found = (_Server(url, options, cluster), 0)
            self.servers[ident] = (found[0], found[1] + 1)
            return ident, found[0]

    def release(self, ident: str) -> None:
        with self.lock:
            found = self.servers.get(ident)
            if found is None:
                return
            if found[1] > 1:
                self.servers[ident] = (found[0], found[1] - 1)
                return
            del self.servers[ident]
        found[0].close()


_shared = _Shared()


class RedisLedger:
    """What the sync and the asyncio Redis stores share: the URL's options, the keys, the
    project's marker, and every operation as a plan of script calls (:mod:`.redis_codec`)."""

    max_models: int

    def _setup(
        self,
        url: str,
        project: str,
        prefix: str | None,
        cluster: bool | None,
        max_models: int,
        history_retention: float | str,
        history_cap: int,
    ) -> bool:
        """Read the URL's options; whether it names a Redis Cluster."""
        names.check(project, "project_name")
        if isinstance(max_models, bool) or not isinstance(max_models, int) or max_models < 1:
            raise InvalidInputError(
                f"max_models must be a positive integer, got {max_models!r}", field="max_models"
            )
        self.max_models = max_models
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        for key, value in query:
            if key == "prefix" and prefix is None:
                prefix = value
            elif key == "cluster" and cluster is None:
                cluster = _flag(value)
        rest = [(k, v) for k, v in query if k not in ("prefix", "cluster")]
        self.url = urlunsplit(parts._replace(query=urlencode(rest)))
        self.project = project
        self.prefix = codec.check_prefix(codec.DEFAULT_PREFIX if prefix is None else prefix)
        self.keys = codec.Keys(self.prefix, project)
        if isinstance(history_cap, bool) or not isinstance(history_cap, int) or history_cap < 1:
            raise InvalidInputError(
                f"history_cap must be a positive integer, got {history_cap!r}", field="history_cap"
            )
        self.recording = codec.Recording(history.span(history_retention), history_cap)
        self._shown = _redact(self.url)
        self._scripts = scripts()
        self._marker: bytes | None = None
        self._levels: dict[str, tuple[tuple[str, float | None], ...]] = {}
        self._closed = False
        return bool(cluster)

    def __repr__(self) -> str:
        kind = type(self).__name__
        return f"{kind}({self._shown!r}, project={self.project!r}, prefix={self.prefix!r})"

    @classmethod
    def backend_errors(
        cls,
    ) -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
        import redis.exceptions as errors

        return (errors.ConnectionError, errors.TimeoutError), (errors.RedisError,)

    def _open_call(self) -> tuple[codec.Call, tuple[str, str], bytes | None]:
        """The call that sets or checks the project's marker; where it is remembered."""
        seen_at = (self.url, self.keys.marker)
        seen = _shared.markers.get(seen_at)
        return codec.open_call(self.keys, seen), seen_at, seen

    def _adopt_marker(self, reply: Any, seen_at: tuple[str, str], seen: bytes | None) -> bytes:
        found = codec.marker(reply, seen)
        self._marker = _shared.markers.setdefault(seen_at, found)
        if self._marker != found:  # another store of this process saw another marker
            raise codec.refusal([b"err", b"lost"])
        return self._marker

    # -- the operations, as plans ----------------------------------------------------------------
    def _get(self, user: str) -> codec.Plan[UserRecord | None]:
        return codec.get(self.keys, user)

    def _users(self) -> codec.Plan[list[str]]:
        return codec.users(self.keys)

    def _records(self) -> codec.Plan[dict[str, UserRecord]]:
        return codec.records(self.keys)

    def _holds(self, user: str | None = None) -> codec.Plan[list[HoldRecord]]:
        return codec.holds(self.keys, user)

    def _history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> codec.Plan[list[HistoryEvent]]:
        return codec.history(self.keys, user, model, since, until, limit)

    def _put(
        self, user: str, record: UserRecord, now: float | None = None
    ) -> codec.Plan[UserRecord]:
        names.check(user, "user")
        if record.parent is not None:
            names.check(record.parent, "parent")
        return codec.put(self.keys, user, record, self.recording, now)

    def _delete(self, user: str, now: float | None = None) -> codec.Plan[bool]:
        return codec.delete(self.keys, user, self.recording, now)

    def _replace_all(self, records: dict[str, UserRecord]) -> codec.Plan[None]:
        ledger.check_forest(records)
        for user in records:
            names.check(user, "user")
        return codec.replace_all(self.keys, records)

    def _charge(
        self,
        levels: Sequence[Level],
        model: str | None,
        amount: Decimal,
        now: float,
        limit_check: bool = False,
        key: str | None = None,
        thresholds: Sequence[Decimal] = (),
        tokens: dict[str, int] | None = None,
    ) -> codec.Plan[Outcome]:
        return codec.charge(
            self.keys,
            levels,
            model,
            amount,
            now,
            limit_check,
            key,
            thresholds,
            self.max_models,
            self.recording,
            tokens,
        )

    def _hold(
        self,
        levels: Sequence[Level],
        hold_id: str,
        amount: Decimal,
        expires_at: float,
        now: float,
        model: str | None = None,
        limit_check: bool = True,
    ) -> codec.Plan[Outcome]:
        pending = codec.hold_call(
            self.keys, levels, hold_id, amount, expires_at, now, model, limit_check, self.recording
        )
        outcome = pending.result((yield pending.call))
        if outcome.hold is not None:
            if len(self._levels) >= LEVELS_CACHE:
                self._levels.clear()
            self._levels[hold_id] = outcome.hold.levels
        return outcome

    def _settle(
        self,
        hold_id: str,
        amount: Decimal,
        model: str | None,
        thresholds: Sequence[Decimal] = (),
        known: HoldRecord | None = None,
        now: float | None = None,
        tokens: dict[str, int] | None = None,
    ) -> codec.Plan[Outcome]:
        recorded = (self.max_models, self.recording, now, tokens)
        if known is not None:  # the common case: one call
            pending = codec.settle_call(
                self.keys, hold_id, amount, model, thresholds, known, known.levels, *recorded
            )
            try:
                outcome = pending.result((yield pending.call))
            except codec.Relevel:
                outcome = yield from codec.settle(
                    self.keys, hold_id, amount, model, thresholds, None, None, *recorded
                )
        else:
            hint = self._levels.get(hold_id)
            outcome = yield from codec.settle(
                self.keys, hold_id, amount, model, thresholds, None, hint, *recorded
            )
        self._levels.pop(hold_id, None)
        return outcome

    def _release(self, hold_id: str, now: float | None = None) -> codec.Plan[Outcome]:
        hint = self._levels.get(hold_id)
        outcome = yield from codec.release(self.keys, hold_id, hint, self.recording, now)
        self._levels.pop(hold_id, None)
        return outcome

    def _reset(self, user: str, now: float | None = None) -> codec.Plan[Outcome]:
        return codec.reset(self.keys, user, self.recording, now)

    def _roll(self, levels: Sequence[Level], now: float | None = None) -> codec.Plan[Outcome]:
        return codec.roll(self.keys, levels, self.recording, now)


def _blocking(plan: Callable[Concatenate[L, P], codec.Plan[T]]) -> Callable[Concatenate[L, P], T]:
    """The store method that sends the calls of ``plan`` and waits for their replies."""

    def method(self: L, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(plan(self, *args, **kwargs))  # type: ignore[attr-defined, no-any-return]

    method.__name__ = method.__qualname__ = plan.__name__.lstrip("_")
    method.__doc__ = plan.__doc__
    return method


def _awaiting(
    plan: Callable[Concatenate[L, P], codec.Plan[T]],
) -> Callable[Concatenate[L, P], Coroutine[Any, Any, T]]:
    """The coroutine that sends the calls of ``plan`` and awaits their replies."""

    async def method(self: L, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(plan(self, *args, **kwargs))  # type: ignore[attr-defined, no-any-return]

    method.__name__ = method.__qualname__ = plan.__name__.lstrip("_")
    method.__doc__ = plan.__doc__
    return method


@register
class RedisStore(RedisLedger, BudgetStore):
    """Budgets and holds of one project in Redis; see the module docstring."""

    schemes = ("redis", "rediss")

    def __init__(
        self,
        url: str,
        project: str,
        *,
        prefix: str | None = None,
        cluster: bool | None = None,
        max_models: int = MAX_MODELS,
        history_retention: float | str = DEFAULT_RETENTION,
        history_cap: int = HISTORY_CAP,
        **options: Any,
    ) -> None:
        """``prefix`` and ``cluster`` as the URL's options; ``max_models``: distinct models a
        budget may record in one period (100); ``history_retention``: how long history events
        are kept (seconds or a span such as ``"90d"``); ``history_cap``: the most events the
        project's stream keeps (about); other options go to redis-py."""
        cluster = self._setup(
            url, project, prefix, cluster, max_models, history_retention, history_cap
        )
        self._ident, self._server = _shared.acquire(self.url, options, cluster)
        self._marker_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, project: str, **options: Any) -> RedisStore:
        return cls(url, project, **options)

    backend_errors = RedisLedger.backend_errors
    __repr__ = RedisLedger.__repr__

    # -- sending ---------------------------------------------------------------------------------
    def _run(self, plan: codec.Plan[T]) -> T:
        """Drive ``plan`` to its end, sending the calls it asks for."""
        try:
            call = next(plan)
            while True:
                call = plan.send(self._send(call))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _send(self, call: codec.Call) -> Any:
        marker = self._marker if self._marker is not None else self._open()
        return self._eval(
            call.script, [self.keys.marker, *call.keys], [marker, *call.args], call.retry
        )

    def _eval(self, name: str, keys: list[str], args: Sequence[Any], retry: bool) -> Any:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        script = self._scripts[name]
        call = self._server.call
        errors = self._server.errors
        attempts = len(RETRY_DELAYS) if retry else 0
        for attempt in range(attempts + 1):
            try:
                try:
                    return call("EVALSHA", script.sha, len(keys), *keys, *args, check=not retry)
                except (
                    errors.NoScriptError
                ):  # a new or restarted Redis: EVAL caches it for next time
                    return call("EVAL", script.source, len(keys), *keys, *args)
            except (errors.ConnectionError, errors.TimeoutError):
                if attempt == attempts:
                    raise
                time.sleep(RETRY_DELAYS[attempt])
        raise AssertionError("unreachable")  # pragma: no cover

    def _open(self) -> bytes:
        """The project's marker, set if the project is new; LostData if it vanished."""
        with self._marker_lock:
            if self._marker is None:
                call, seen_at, seen = self._open_call()
                reply = self._eval(call.script, [self.keys.marker], call.args, call.retry)
                return self._adopt_marker(reply, seen_at, seen)
            return self._marker

    # -- the operations ----------------------------------------------------------------------------
    get = _blocking(RedisLedger._get)
    users = _blocking(RedisLedger._users)
    records = _blocking(RedisLedger._records)
    holds = _blocking(RedisLedger._holds)
    history = _blocking(RedisLedger._history)
    put = _blocking(RedisLedger._put)
    delete = _blocking(RedisLedger._delete)
    replace_all = _blocking(RedisLedger._replace_all)
    charge = _blocking(RedisLedger._charge)
    hold = _blocking(RedisLedger._hold)
    settle = _blocking(RedisLedger._settle)
    release = _blocking(RedisLedger._release)
    reset = _blocking(RedisLedger._reset)
    roll = _blocking(RedisLedger._roll)

    # -- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _shared.release(self._ident)


class AsyncRedisStore(RedisLedger, AsyncBudgetStore):
    """:class:`RedisStore` for asyncio, over ``redis.asyncio``: the same scripts, keys and
    replies; one pool of at most ``max_connections`` (default 64) connections per store, which
    concurrent tasks wait for."""

    def __init__(
        self,
        url: str,
        project: str,
        *,
        prefix: str | None = None,
        cluster: bool | None = None,
        max_models: int = MAX_MODELS,
        max_connections: int = 64,
        history_retention: float | str = DEFAULT_RETENTION,
        history_cap: int = HISTORY_CAP,
        **options: Any,
    ) -> None:
        cluster = self._setup(
            url, project, prefix, cluster, max_models, history_retention, history_cap
        )
        try:
            import redis.asyncio as aioredis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise StoreError(
                "redis:// stores need redis-py: pip install 'budget-manager[redis]'"
            ) from None
        settings = {**DEFAULTS, "retry": Retry(NoBackoff(), 0), **options}
        try:
            self._server = _AsyncServer(self.url, settings, cluster, max_connections, aioredis)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"bad Redis URL or option for {self._shown!r}: {exc}") from None
        import redis.exceptions

        self._errors = redis.exceptions

    @classmethod
    def from_url(cls, url: str, project: str, **options: Any) -> AsyncRedisStore:
        return cls(url, project, **options)

    backend_errors = RedisLedger.backend_errors
    __repr__ = RedisLedger.__repr__

    async def _run(self, plan: codec.Plan[T]) -> T:
        """Drive ``plan`` to its end, awaiting the calls it asks for."""
        try:
            call = next(plan)
            while True:
                call = plan.send(await self._send(call))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _send(self, call: codec.Call) -> Any:
        if self._marker is None:
            opening, seen_at, seen = self._open_call()
            reply = await self._eval(opening.script, [self.keys.marker], opening.args, True)
            self._adopt_marker(reply, seen_at, seen)
        return await self._eval(
            call.script, [self.keys.marker, *call.keys], [self._marker, *call.args], call.retry
        )

    async def _eval(self, name: str, keys: list[str], args: Sequence[Any], retry: bool) -> Any:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        script = self._scripts[name]
        errors = self._errors
        attempts = len(RETRY_DELAYS) if retry else 0
        for attempt in range(attempts + 1):
            try:
                try:
                    return await self._server.call("EVALSHA", script.sha, len(keys), *keys, *args)
                except errors.NoScriptError:  # a new or restarted Redis: EVAL caches it
                    return await self._server.call("EVAL", script.source, len(keys), *keys, *args)
            except (errors.ConnectionError, errors.TimeoutError):
                if attempt == attempts:
                    raise
                await asyncio.sleep(RETRY_DELAYS[attempt])
        raise AssertionError("unreachable")  # pragma: no cover

    get = _awaiting(RedisLedger._get)
    users = _awaiting(RedisLedger._users)
    records = _awaiting(RedisLedger._records)
    holds = _awaiting(RedisLedger._holds)
    history = _awaiting(RedisLedger._history)
    put = _awaiting(RedisLedger._put)
    delete = _awaiting(RedisLedger._delete)
    replace_all = _awaiting(RedisLedger._replace_all)
    charge = _awaiting(RedisLedger._charge)
    hold = _awaiting(RedisLedger._hold)
    settle = _awaiting(RedisLedger._settle)
    release = _awaiting(RedisLedger._release)
    reset = _awaiting(RedisLedger._reset)
    roll = _awaiting(RedisLedger._roll)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._server.close()


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise InvalidInputError(f"cluster= must be true or false, got {value!r}")


def _redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))
