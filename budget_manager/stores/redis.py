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

import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import ledger, names
from ..errors import InvalidInputError, StoreError
from ..ledger import Level, Outcome
from ..records import MAX_MODELS, HoldRecord, UserRecord
from . import redis_codec as codec
from .base import BudgetStore, register
from .redis_scripts import scripts

T = TypeVar("T")

#: Pauses before sending again a call whose connection failed (only calls that cannot apply
#: twice: everything but a charge without idempotency key and a delete).
RETRY_DELAYS = (0.0, 0.05, 0.25)
#: redis-py options unless the URL or the caller set them (seconds).
DEFAULTS: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
#: Most hold ids whose levels are remembered, so a release needs no read first.
LEVELS_CACHE = 10_000


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


@register
class RedisStore(BudgetStore):
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
        **options: Any,
    ) -> None:
        """``prefix`` and ``cluster`` as the URL's options; ``max_models``: distinct models a
        budget may record in one period (100); other options go to redis-py."""
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
        self._shown = _redact(self.url)
        self._ident, self._server = _shared.acquire(self.url, options, bool(cluster))
        self._scripts = scripts()
        self._marker: bytes | None = None
        self._marker_lock = threading.Lock()
        self._levels: dict[str, tuple[tuple[str, float | None], ...]] = {}
        self._closed = False

    @classmethod
    def from_url(cls, url: str, project: str, **options: Any) -> RedisStore:
        return cls(url, project, **options)

    @classmethod
    def backend_errors(
        cls,
    ) -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
        import redis.exceptions as errors

        return (errors.ConnectionError, errors.TimeoutError), (errors.RedisError,)

    def __repr__(self) -> str:
        return f"RedisStore({self._shown!r}, project={self.project!r}, prefix={self.prefix!r})"

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
                seen_at = (self.url, self.keys.marker)
                seen = _shared.markers.get(seen_at)
                call = codec.open_call(self.keys, seen)
                reply = self._eval(call.script, [self.keys.marker], call.args, call.retry)
                found = codec.marker(reply, seen)
                self._marker = _shared.markers.setdefault(seen_at, found)
                if self._marker != found:  # another store of this process saw another marker
                    raise codec.refusal([b"err", b"lost"])
            return self._marker

    # -- reads -----------------------------------------------------------------------------------
    def get(self, user: str) -> UserRecord | None:
        return self._run(codec.get(self.keys, user))

    def users(self) -> list[str]:
        return self._run(codec.users(self.keys))

    def records(self) -> dict[str, UserRecord]:
        return self._run(codec.records(self.keys))

    def holds(self, user: str | None = None) -> list[HoldRecord]:
        return self._run(codec.holds(self.keys, user))

    # -- changes ---------------------------------------------------------------------------------
    def put(self, user: str, record: UserRecord) -> UserRecord:
        names.check(user, "user")
        if record.parent is not None:
            names.check(record.parent, "parent")
        return self._run(codec.put(self.keys, user, record))

    def delete(self, user: str) -> bool:
        return self._run(codec.delete(self.keys, user))

    def replace_all(self, records: dict[str, UserRecord]) -> None:
        ledger.check_forest(records)
        for user in records:
            names.check(user, "user")
        self._run(codec.replace_all(self.keys, records))

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
        return self._run(
            codec.charge(
                self.keys, levels, model, amount, now, limit_check, key, thresholds, self.max_models
            )
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
        pending = codec.hold_call(
            self.keys, levels, hold_id, amount, expires_at, now, model, limit_check
        )
        outcome = pending.result(self._send(pending.call))
        if outcome.hold is not None:
            if len(self._levels) >= LEVELS_CACHE:
                self._levels.clear()
            self._levels[hold_id] = outcome.hold.levels
        return outcome

    def settle(
        self,
        hold_id: str,
        amount: Decimal,
        model: str | None,
        thresholds: Sequence[Decimal] = (),
        known: HoldRecord | None = None,
    ) -> Outcome:
        if known is not None:  # the common case: one call, without a plan
            pending = codec.settle_call(
                self.keys, hold_id, amount, model, thresholds, known, known.levels, self.max_models
            )
            try:
                outcome = pending.result(self._send(pending.call))
            except codec.Relevel:
                outcome = self._run(
                    codec.settle(
                        self.keys, hold_id, amount, model, thresholds, None, None, self.max_models
                    )
                )
        else:
            hint = self._levels.get(hold_id)
            outcome = self._run(
                codec.settle(
                    self.keys, hold_id, amount, model, thresholds, None, hint, self.max_models
                )
            )
        self._levels.pop(hold_id, None)
        return outcome

    def release(self, hold_id: str) -> Outcome:
        outcome = self._run(codec.release(self.keys, hold_id, self._levels.get(hold_id)))
        self._levels.pop(hold_id, None)
        return outcome

    def reset(self, user: str) -> Outcome:
        return self._run(codec.reset(self.keys, user))

    def roll(self, levels: Sequence[Level]) -> Outcome:
        return self._run(codec.roll(self.keys, levels))

    # -- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _shared.release(self._ident)


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
