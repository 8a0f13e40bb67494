"""The operations layer: every change to budgets goes through here, from the manager, the
service's routes and its fast lane alike.

It computes each budget's period window in Python (:mod:`budget_manager.windows`), hands the
store one atomic ledger operation (:mod:`budget_manager.ledger`), retries when the hierarchy
changed underneath, and announces an :class:`~budget_manager.events.Event` per change.

The logic is written once, as generators that yield the store calls they need (:class:`Call`) and
receive their results; :class:`Operations` runs them against a store synchronously, and the
asyncio layer runs the very same generators against an asyncio store.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable, Coroutine, Generator, Iterable, Sequence
from decimal import Decimal
from typing import Any, Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar

from . import money, names
from .errors import InvalidInputError, StoreError, UnknownHoldError, UnknownUserError
from .events import Event, EventKind, Listener
from .history import HistoryEvent, check_limit
from .ledger import MAX_LEVELS, ChainChanged, Level, Outcome
from .records import HoldRecord, UserRecord
from .stores.base import BudgetStore
from .windows import window_of

logger = logging.getLogger("budget_manager")
T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")
P = ParamSpec("P")
Clock = Callable[[], float]
#: ``progress(done, total)``: told how far a long operation has come.
Progress = Callable[[int, int], None]

#: How often an operation is computed again when the hierarchy changed while it ran.
RETRIES = 8
#: Longest and default time a hold holds, in seconds.
MAX_TTL = 7 * 86_400
DEFAULT_TTL = 300.0
#: Most users whose levels (and model names) are remembered.
CACHE_LIMIT = 100_000


class Ledger(Protocol):
    """The operations a manager performs: :class:`Operations` over a store, or a client of a
    budget service that performs them itself."""

    def subscribe(self, listener: Listener) -> None: ...
    def watch(self, fractions: Iterable[Decimal]) -> None: ...
    def get(self, user: str) -> UserRecord | None: ...
    def users(self) -> list[str]: ...
    def records(self) -> dict[str, UserRecord]: ...
    def holds(self, user: str | None = None) -> list[HoldRecord]: ...
    def history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HistoryEvent]: ...
    def available(self, user: str) -> Decimal: ...
    def put(self, user: str, record: UserRecord) -> UserRecord: ...
    def delete(self, user: str) -> bool: ...
    def charge(self, user: str, model: str | None, amount: Decimal, **options: Any) -> Outcome: ...
    def hold(self, user: str, amount: Decimal, **options: Any) -> Outcome: ...
    def settle(
        self, hold_id: str, amount: Decimal, model: str | None = None, **options: Any
    ) -> Outcome: ...
    def release(self, hold_id: str) -> Outcome: ...
    def reset(self, user: str) -> UserRecord: ...
    def roll(self, user: str) -> UserRecord | None: ...
    def roll_all(self, progress: Progress | None = None) -> int: ...
    def replace_all(self, records: dict[str, UserRecord]) -> None: ...
    def save(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class Call(NamedTuple):
    """One store method call a flow needs: ``store.<method>(*args, **kwargs)``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None


Flow = Generator[Call, Any, T]


def drive(target: Any, flow: Flow[T]) -> T:
    """Run ``flow`` to its end, making each call it asks for on ``target`` and sending it the
    result (or throwing in the exception: the flow decides what a failure means)."""
    try:
        call = next(flow)
        while True:
            try:
                kwargs = call.kwargs
                method = getattr(target, call.method)
                result = method(*call.args, **kwargs) if kwargs else method(*call.args)
            except Exception as exc:
                call = flow.throw(exc)
            else:
                call = flow.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def adrive(target: Any, flow: Flow[T]) -> T:
    """:func:`drive` for a ``target`` whose methods are coroutines."""
    try:
        call = next(flow)
        while True:
            try:
                kwargs = call.kwargs
                method = getattr(target, call.method)
                result = await (method(*call.args, **kwargs) if kwargs else method(*call.args))
            except Exception as exc:
                call = flow.throw(exc)
            else:
                call = flow.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def blocking(
    flow: Callable[Concatenate[S, P], Flow[R]], target: str = "_ops"
) -> Callable[Concatenate[S, P], R]:
    """The synchronous method that runs ``flow`` against the object in attribute ``target``
    (named as the flow is, without its leading underscore, with its docstring)."""

    def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return drive(getattr(self, target), flow(self, *args, **kwargs))

    _adopt(method, flow)
    return method


def awaiting(
    flow: Callable[Concatenate[S, P], Flow[R]], target: str = "_ops"
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """The coroutine method that runs ``flow`` with ``await`` against the object in attribute
    ``target`` (opened first by ``self._ready()`` while that attribute is None)."""

    async def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        on = getattr(self, target)
        if on is None:
            await self._ready()  # type: ignore[attr-defined]
            on = getattr(self, target)
        return await adrive(on, flow(self, *args, **kwargs))

    _adopt(method, flow)
    return method


def _adopt(method: Any, flow: Any) -> None:
    functools.update_wrapper(method, flow)
    method.__name__ = flow.__name__.lstrip("_")
    method.__qualname__ = method.__name__


class Announcer:
    """Listeners of changes, and the one way an :class:`Event` is made from an outcome."""

    def __init__(self, thresholds: Sequence[Decimal] = ()) -> None:
        self.listeners: list[Listener] = []
        #: Fractions of every budget whose crossing is marked in the store and announced.
        self.thresholds: tuple[Decimal, ...] = tuple(sorted(set(thresholds)))

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(event)`` after every change made through this layer."""
        self.listeners.append(listener)

    def watch(self, fractions: Iterable[Decimal]) -> None:
        """Also mark and announce crossings of ``fractions`` (see :func:`.events.alert_fractions`)."""
        self.thresholds = self.watching(fractions)

    def watching(self, extra: Iterable[Decimal] | None) -> tuple[Decimal, ...]:
        """The fractions watched, with ``extra`` (a request's own) added."""
        if not extra:
            return self.thresholds
        return tuple(sorted({*self.thresholds, *extra}))

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # the change happened: a listener's failure must not undo it
                logger.exception("event listener %r failed on %s", listener, event.kind)

    def announce(
        self,
        kind: EventKind,
        user: str,
        now: float,
        outcome: Outcome | None = None,
        *,
        amount: Decimal | None = None,
        model: str | None = None,
        hold_id: str | None = None,
        tokens: dict[str, int] | None = None,
    ) -> None:
        """Emit the event of one change (none for an idempotent repeat, or without listeners)."""
        if not self.listeners or (outcome is not None and outcome.replayed):
            return
        record = outcome.record if outcome is not None else None
        window: tuple[float | None, float | None] = (None, None)
        if record is not None and record.period is not None:
            window = (record.last_updated_at, record.period_end())
        self.emit(
            Event(
                kind,
                user,
                now,
                amount=amount,
                model=model,
                hold_id=hold_id,
                window=window,
                rolled=outcome.rolled if outcome is not None else (),
                alerts=outcome.alerts if outcome is not None else (),
                tokens=tokens,
            )
        )


class Flows(Announcer):
    """The operations, as flows; shared by the sync and asyncio drivers."""

    def __init__(self, clock: Clock, thresholds: Sequence[Decimal] = ()) -> None:
        super().__init__(thresholds)
        self.clock = clock
        self._levels: dict[str, tuple[Level, ...]] = {}  # user -> levels last computed
        self._models: set[str] = set()  # model names already found valid
        self._cache_lock = threading.Lock()

    # -- levels --------------------------------------------------------------------------------
    def levels(self, user: str, now: float) -> Flow[tuple[Level, ...]]:
        """The user's and its ancestors' windows at ``now`` (from the last reading while every
        window still holds ``now``; the store refuses them if the budgets changed meanwhile)."""
        cached = self._levels.get(user)
        if cached is not None and _current(cached, now):
            return cached
        chain: list[UserRecord] = yield Call("chain", (user,))
        if not chain:
            raise UnknownUserError(user)
        names_ = [user] + [r.parent for r in chain[:-1] if r.parent is not None]
        levels = tuple((n, window_of(r, now)) for n, r in zip(names_, chain, strict=True))
        if len(levels) > MAX_LEVELS:
            raise StoreError(f"budget {user!r} has more than {MAX_LEVELS} levels of parents")
        with self._cache_lock:
            if len(self._levels) > CACHE_LIMIT:
                self._levels.clear()
            if len(self._models) > CACHE_LIMIT:
                self._models.clear()
            self._levels[user] = levels
        return levels

    def forget(self, user: str | None = None) -> None:
        """Drop remembered levels (of ``user``, or all): they are read again at next use."""
        with self._cache_lock:
            if user is None:
                self._levels.clear()
            else:
                self._levels.pop(user, None)

    def _leveled(self, user: str, now: float, method: str, args: tuple[Any, ...]) -> Flow[Any]:
        """``store.<method>(levels, *args)`` with the user's levels at ``now``, computed again
        until the store accepts them."""
        for _ in range(RETRIES):
            levels = self._levels.get(user)
            if levels is None or not _current(levels, now):
                levels = yield from self.levels(user, now)
            try:
                return (yield Call(method, (levels, *args)))
            except ChainChanged:
                self.forget()  # an ancestor changed: every user below it is stale
            except UnknownUserError:
                self.forget(user)
                raise
        raise StoreError(f"the budgets above {user!r} kept changing; try again")

    # -- flows ---------------------------------------------------------------------------------
    def put(self, user: str, record: UserRecord) -> Flow[UserRecord]:
        names.check(user, "user")
        if record.parent is not None:
            names.check(record.parent, "parent")
        record.total_budget = money.rounded(record.total_budget)
        stored: UserRecord = yield Call("put", (user, record, self.clock()))
        self.forget()
        self.announce("create", user, self.clock(), Outcome(stored), amount=record.total_budget)
        return stored

    def delete(self, user: str) -> Flow[bool]:
        names.check(user, "user")
        existed: bool = yield Call("delete", (user, self.clock()))
        self.forget()
        if existed:
            self.announce("delete", user, self.clock())
        return existed

    def charge(
        self,
        user: str,
        model: str | None,
        amount: Decimal,
        *,
        limit_check: bool = False,
        key: str | None = None,
        tokens: dict[str, int] | None = None,
        alert_at: Sequence[Decimal] | None = None,
    ) -> Flow[Outcome]:
        """Add a cost to the user's spend (and its ancestors'); ``alert_at``: fractions to
        watch for this charge besides those watched always."""
        if model is not None and model not in self._models:
            self._models.add(names.check_model(model))
        amount = money.rounded(money.to_money(amount, "cost"))
        now = self.clock()
        outcome: Outcome = yield from self._leveled(
            user,
            now,
            "charge",
            (model, amount, now, limit_check, key, self.watching(alert_at), tokens),
        )
        if self.listeners:
            self.announce("charge", user, now, outcome, amount=amount, model=model, tokens=tokens)
        return outcome

    def hold(
        self,
        user: str,
        amount: Decimal,
        *,
        ttl: float = DEFAULT_TTL,
        hold_id: str | None = None,
        model: str | None = None,
        limit_check: bool = True,
    ) -> Flow[Outcome]:
        """Hold ``amount`` of the user's budget (and its ancestors') for ``ttl`` seconds."""
        amount = money.rounded(money.to_money(amount, "amount"))
        ttl = _ttl(ttl)
        hold_id = names.check(hold_id, "hold_id") if hold_id is not None else uuid.uuid4().hex
        if model is not None:
            names.check_model(model)
        now = self.clock()
        outcome: Outcome = yield from self._leveled(
            user,
            now,
            "hold",
            (hold_id, amount, now + ttl, now, model, limit_check),
        )
        self.announce("hold", user, now, outcome, amount=amount, model=model, hold_id=hold_id)
        return outcome

    def settle(
        self,
        hold_id: str,
        amount: Decimal,
        model: str | None = None,
        *,
        known: HoldRecord | None = None,
        tokens: dict[str, int] | None = None,
        alert_at: Sequence[Decimal] | None = None,
    ) -> Flow[Outcome]:
        """Record a hold's actual cost and free the rest (``alert_at`` as for :meth:`charge`)."""
        names.check(hold_id, "hold_id")
        amount = money.rounded(money.to_money(amount, "cost"))
        if model is not None:
            names.check_model(model)
        now = self.clock()
        thresholds = self.watching(alert_at)
        try:  # the store has the hold, mostly: ``known`` need not travel
            outcome: Outcome = yield Call(
                "settle", (hold_id, amount, model, thresholds, None, now, tokens)
            )
        except UnknownHoldError:
            if known is None:
                raise
            outcome = yield Call("settle", (hold_id, amount, model, thresholds, known, now, tokens))
        hold = outcome.hold
        if hold is not None and not outcome.replayed and amount > hold.amount:
            logger.warning(
                "hold %s of %s settled at %s, above the %s it held",
                hold_id,
                hold.user,
                amount,
                hold.amount,
            )
        user = hold.user if hold is not None else ""
        self.announce(
            "settle",
            user,
            now,
            outcome,
            amount=amount,
            model=model or (hold.model if hold is not None else None),
            hold_id=hold_id,
            tokens=tokens,
        )
        return outcome

    def release(self, hold_id: str) -> Flow[Outcome]:
        """Free a hold without recording a cost."""
        names.check(hold_id, "hold_id")
        now = self.clock()
        outcome: Outcome = yield Call("release", (hold_id, now))
        user = outcome.hold.user if outcome.hold is not None else ""
        self.announce("release", user, now, outcome, hold_id=hold_id)
        return outcome

    def reset(self, user: str) -> Flow[UserRecord]:
        names.check(user, "user")
        now = self.clock()
        outcome: Outcome = yield Call("reset", (user, now))
        self.announce("reset", user, now, outcome)
        assert outcome.record is not None
        return outcome.record

    def roll(self, user: str) -> Flow[UserRecord | None]:
        """Start the user's current period (and its ancestors') if the last one has ended."""
        names.check(user, "user")
        now = self.clock()
        outcome: Outcome = yield from self._leveled(user, now, "roll", (now,))
        if outcome.rolled:
            self.announce("roll", user, now, outcome)
        return outcome.record

    def holds(self, user: str | None = None) -> Flow[list[HoldRecord]]:
        """Open, unexpired holds (those against ``user``'s budget, if given)."""
        if user is not None:
            names.check(user, "user")
        now = self.clock()
        found: list[HoldRecord] = yield Call("holds", (user,))
        return [h for h in found if h.holds_at(now)]

    def history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> Flow[list[HistoryEvent]]:
        """The store's history events that match, oldest first (the latest ``limit`` of them)."""
        if user is not None:
            names.check(user, "user")
        if model is not None:
            names.check_model(model)
        found: list[HistoryEvent] = yield Call(
            "history", (user, model, since, until, check_limit(limit))
        )
        return found

    def available(self, user: str) -> Flow[Decimal]:
        """What the user could hold now: the least any budget of its chain has left after its
        settled spend and open holds (never below zero)."""
        names.check(user, "user")
        now = self.clock()
        chain: list[UserRecord] = yield Call("chain", (user,))
        budgets = [user] + [r.parent for r in chain[:-1] if r.parent is not None]
        left = []
        for name, record in zip(budgets, chain, strict=True):
            held = money.ZERO
            found: list[HoldRecord] = yield Call("holds", (name,))
            for hold in found:
                if hold.holds_at(now):
                    held = money.add(held, hold.amount)
            left.append(record.total_budget - record.spent(now) - held)
        return max(min(left), money.ZERO)

    def roll_all(self, progress: Progress | None = None) -> Flow[int]:
        """Roll every budget whose period has ended; how many rolled. ``progress(done, total)``
        is told after each budget due."""
        now = self.clock()
        records: dict[str, UserRecord] = yield Call("records")
        due = [(u, r) for u, r in records.items() if r.is_due(now)]
        count = 0
        for done, (user, record) in enumerate(due, 1):
            try:
                outcome: Outcome = yield Call("roll", (((user, window_of(record, now)),), now))
            except UnknownUserError:
                pass  # deleted meanwhile: nothing to roll
            else:
                count += len(outcome.rolled)
                if outcome.rolled:
                    self.announce("roll", user, now, outcome)
            if progress is not None:
                progress(done, len(due))
        return count


class Operations:
    """The operations layer over a (synchronous) :class:`BudgetStore`: each method runs one flow."""

    def __init__(
        self, store: BudgetStore, clock: Clock, thresholds: Sequence[Decimal] = ()
    ) -> None:
        self.store = store
        self.flows = Flows(clock, thresholds)

    @property
    def clock(self) -> Clock:
        return self.flows.clock

    def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` to its end, making the store calls it asks for."""
        return drive(self.store, flow)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(event)`` after every change made through this layer."""
        self.flows.subscribe(listener)

    def watch(self, fractions: Iterable[Decimal]) -> None:
        """Also mark and announce crossings of ``fractions`` of every budget."""
        self.flows.watch(fractions)

    # -- reads: straight from the store ---------------------------------------------------------
    def get(self, user: str) -> UserRecord | None:
        return self.store.get(names.check(user, "user"))

    def users(self) -> list[str]:
        return self.store.users()

    def records(self) -> dict[str, UserRecord]:
        return self.store.records()

    def holds(self, user: str | None = None) -> list[HoldRecord]:
        return self.run(self.flows.holds(user))

    def history(self, *args: Any) -> list[HistoryEvent]:
        return self.run(self.flows.history(*args))

    def available(self, user: str) -> Decimal:
        return self.run(self.flows.available(user))

    # -- changes --------------------------------------------------------------------------------
    def put(self, user: str, record: UserRecord) -> UserRecord:
        return self.run(self.flows.put(user, record))

    def delete(self, user: str) -> bool:
        return self.run(self.flows.delete(user))

    def charge(self, user: str, model: str | None, amount: Decimal, **options: Any) -> Outcome:
        return self.run(self.flows.charge(user, model, amount, **options))

    def hold(self, user: str, amount: Decimal, **options: Any) -> Outcome:
        return self.run(self.flows.hold(user, amount, **options))

    def settle(
        self, hold_id: str, amount: Decimal, model: str | None = None, **options: Any
    ) -> Outcome:
        return self.run(self.flows.settle(hold_id, amount, model, **options))

    def release(self, hold_id: str) -> Outcome:
        return self.run(self.flows.release(hold_id))

    def reset(self, user: str) -> UserRecord:
        return self.run(self.flows.reset(user))

    def roll(self, user: str) -> UserRecord | None:
        return self.run(self.flows.roll(user))

    def roll_all(self, progress: Progress | None = None) -> int:
        return self.run(self.flows.roll_all(progress))

    def replace_all(self, records: dict[str, UserRecord]) -> None:
        self.store.replace_all(records)
        self.flows.forget()

    def save(self) -> dict[str, Any]:
        return self.store.save()

    def close(self) -> None:
        self.store.close()


class AsyncOperations:
    """The operations layer over an asyncio store (its methods are coroutines): the same flows
    as :class:`Operations`, driven with ``await``."""

    def __init__(self, store: Any, clock: Clock, thresholds: Sequence[Decimal] = ()) -> None:
        self.store = store
        self.flows = Flows(clock, thresholds)

    @property
    def clock(self) -> Clock:
        return self.flows.clock

    async def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` to its end, awaiting the store calls it asks for."""
        return await adrive(self.store, flow)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(event)`` after every change made through this layer."""
        self.flows.subscribe(listener)

    def watch(self, fractions: Iterable[Decimal]) -> None:
        """Also mark and announce crossings of ``fractions`` of every budget."""
        self.flows.watch(fractions)

    async def get(self, user: str) -> UserRecord | None:
        found: UserRecord | None = await self.store.get(names.check(user, "user"))
        return found

    async def users(self) -> list[str]:
        found: list[str] = await self.store.users()
        return found

    async def records(self) -> dict[str, UserRecord]:
        found: dict[str, UserRecord] = await self.store.records()
        return found

    async def holds(self, user: str | None = None) -> list[HoldRecord]:
        return await self.run(self.flows.holds(user))

    async def history(self, *args: Any) -> list[HistoryEvent]:
        return await self.run(self.flows.history(*args))

    async def available(self, user: str) -> Decimal:
        return await self.run(self.flows.available(user))

    async def put(self, user: str, record: UserRecord) -> UserRecord:
        return await self.run(self.flows.put(user, record))

    async def delete(self, user: str) -> bool:
        return await self.run(self.flows.delete(user))

    async def charge(
        self, user: str, model: str | None, amount: Decimal, **options: Any
    ) -> Outcome:
        return await self.run(self.flows.charge(user, model, amount, **options))

    async def hold(self, user: str, amount: Decimal, **options: Any) -> Outcome:
        return await self.run(self.flows.hold(user, amount, **options))

    async def settle(
        self, hold_id: str, amount: Decimal, model: str | None = None, **options: Any
    ) -> Outcome:
        return await self.run(self.flows.settle(hold_id, amount, model, **options))

    async def release(self, hold_id: str) -> Outcome:
        return await self.run(self.flows.release(hold_id))

    async def reset(self, user: str) -> UserRecord:
        return await self.run(self.flows.reset(user))

    async def roll(self, user: str) -> UserRecord | None:
        return await self.run(self.flows.roll(user))

    async def roll_all(self, progress: Progress | None = None) -> int:
        return await self.run(self.flows.roll_all(progress))

    async def replace_all(self, records: dict[str, UserRecord]) -> None:
        await self.store.replace_all(records)
        self.flows.forget()

    async def save(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.store.save()
        return answer

    async def close(self) -> None:
        await self.store.close()


def _current(levels: tuple[Level, ...], now: float) -> bool:
    """Whether every window of ``levels`` contains ``now``."""
    for _, window in levels:
        start = window.start
        if start is not None and not (start <= now < window.end):  # type: ignore[operator]
            return False
    return True


def _ttl(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"ttl must be seconds, got {value!r}")
    ttl = float(value)
    if not 0 < ttl <= MAX_TTL:
        raise InvalidInputError(
            f"ttl must be more than 0 and at most {MAX_TTL} seconds, got {value!r}"
        )
    return ttl
