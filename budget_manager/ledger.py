"""The ledger operations every store performs atomically, written once as pure Python over a
read-only view of the store (:class:`LedgerState`).

Each operation reads what it needs, decides, and returns an :class:`Outcome` (what the caller is
told) and the :class:`Changes` to persist, or raises and changes nothing. The JSON file and SQLite
stores run these functions under their lock / inside their transaction; the PostgreSQL functions
and the Redis Lua scripts implement the same rules in the database, and the contract tests hold
every store to them.

The rules:

- Every change names the budgets it applies to as ``levels``: the user's, then each ancestor's,
  each with the :class:`~budget_manager.windows.Window` the caller computed. A level whose budget
  no longer has that parent or that period definition makes the operation fail with
  :class:`ChainChanged` (the caller computes again); periods roll forward to the window given,
  never back.
- A hold or a limit-checked charge must fit at every level: settled spend plus the amounts of open,
  unexpired holds touching that budget plus the new amount, at most the budget.
- A settle counts at each level only if that budget is still in the period the hold was taken in;
  it is idempotent (a second settle answers as the first), and works on an expired or released hold.
- An alert fraction is marked fired in the same change that crosses it, once per period.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import NamedTuple, Protocol

from . import money, names
from .errors import (
    BudgetExceededError,
    HierarchyError,
    IdempotencyConflictError,
    TooManyModelsError,
    UnknownHoldError,
    UnknownUserError,
)
from .events import Alert
from .history import HistoryEvent
from .money import ZERO
from .records import MAX_MODELS, HoldRecord, UserRecord
from .windows import Window, window_of

#: Most levels in a hierarchy: a user and up to three ancestors.
MAX_LEVELS = 4

Level = tuple[str, Window]


class ChainChanged(Exception):
    """A budget named in ``levels`` changed parent or period since the levels were computed."""


class LedgerState(Protocol):
    """What the ledger reads from a store, inside the store's atomic step."""

    def record(self, user: str) -> UserRecord | None:
        """The user's record as stored (not to be changed), or None."""

    def hold(self, hold_id: str) -> HoldRecord | None:
        """The hold, or None."""

    def holds_touching(self, user: str) -> Iterable[HoldRecord]:
        """At least every open hold that holds against ``user``'s budget."""

    def children(self, user: str) -> Iterable[str]:
        """The users whose parent is ``user``."""

    def seen(self, key: str) -> str | None:
        """The fingerprint of the request an idempotency key was last used for, or None."""


class Changes:
    """What an operation asks the store to persist, all or nothing: records (None: delete),
    holds, the idempotency key (with its request's fingerprint) to remember, and the history
    events of the change."""

    __slots__ = ("events", "holds", "key", "records")

    def __init__(
        self,
        records: dict[str, UserRecord | None] | None = None,
        holds: dict[str, HoldRecord] | None = None,
        key: tuple[str, str] | None = None,
        events: list[HistoryEvent] | None = None,
    ) -> None:
        self.records: dict[str, UserRecord | None] = {} if records is None else records
        self.holds: dict[str, HoldRecord] = {} if holds is None else holds
        self.key = key
        self.events: list[HistoryEvent] = [] if events is None else events

    def __bool__(self) -> bool:
        return bool(self.records or self.holds or self.key)


class Outcome(NamedTuple):
    """What a ledger operation tells its caller."""

    record: UserRecord | None
    hold: HoldRecord | None = None
    rolled: tuple[str, ...] = ()
    alerts: tuple[Alert, ...] = ()
    #: an idempotent repeat (same key, same hold id, a second settle): nothing changed
    replayed: bool = False


#: What an operation that changes nothing returns as its changes.
NO_CHANGES = None


def request_fingerprint(user: str, model: str | None, amount: Decimal) -> str:
    """What an idempotency key remembers of the charge it was used for: 32 hex digits, so the
    same key sent with another request is told apart (and stores keep a fixed size per key)."""
    text = json.dumps([user, model, str(amount)], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# -- reads ---------------------------------------------------------------------------------------
def held(state: LedgerState, user: str, now: float) -> Decimal:
    """What open, unexpired holds hold against ``user``'s budget at ``now``."""
    total = ZERO
    for hold in state.holds_touching(user):
        if hold.holds_at(now) and hold.touches(user):
            total = money.add(total, hold.amount)
    return total


def chain(read: Callable[[str], UserRecord | None], user: str) -> list[UserRecord]:
    """The user's record and each ancestor's (as ``read`` finds them), the user's first;
    UnknownUserError if the user has none."""
    found: list[UserRecord] = []
    name: str | None = user
    while name is not None and len(found) <= MAX_LEVELS:
        record = read(name)
        if record is None:
            if not found:
                raise UnknownUserError(user)
            break  # an ancestor vanished: the caller's levels will not verify
        found.append(record)
        name = record.parent
    return found


def as_of(record: UserRecord, now: float) -> UserRecord:
    """The record as it reads at ``now``: a period that has ended reads as reset."""
    if not record.is_due(now):
        return record
    viewed = record.copy()
    _advance(viewed, window_of(viewed, now))
    return viewed


# -- budgets -------------------------------------------------------------------------------------
def put(
    state: LedgerState, user: str, record: UserRecord, now: float
) -> tuple[Outcome, Changes | None]:
    """Create or replace ``user``'s budget, refusing a missing parent, a cycle or a hierarchy
    deeper than :data:`MAX_LEVELS`."""
    check_names(user, record)
    depth = 1
    name = record.parent
    while name is not None:
        if name == user:
            raise HierarchyError(f"parent {record.parent!r} of {user!r} would make a cycle")
        parent = state.record(name)
        if parent is None:
            raise HierarchyError(
                f"parent {name!r} of {user!r} has no budget; create the parent's budget first"
            )
        depth += 1
        if depth > MAX_LEVELS:
            break
        name = parent.parent
    below = _height(state, user)
    if depth + below - 1 > MAX_LEVELS:
        raise HierarchyError(
            f"budget {user!r} would sit {depth + below - 1} levels deep; at most {MAX_LEVELS} "
            "levels (a user and three ancestors) are allowed"
        )
    event = _event(now, "create", user, record, amount=record.total_budget)
    return Outcome(record), Changes(records={user: record}, events=[event])


def check_names(user: str, record: UserRecord) -> None:
    """InvalidInputError unless the user's and its parent's names follow the one rule."""
    names.check(user, "user")
    if record.parent is not None:
        names.check(record.parent, "parent")


def check_forest(records: dict[str, UserRecord]) -> None:
    """HierarchyError unless every parent named in ``records`` is in it, with no cycle and at
    most :data:`MAX_LEVELS` levels (for replacing a whole user dict at once)."""
    for user, record in records.items():
        seen = [user]
        name = record.parent
        while name is not None:
            if name in seen:
                raise HierarchyError(f"the parents of {user!r} make a cycle: {[*seen, name]}")
            parent = records.get(name)
            if parent is None:
                raise HierarchyError(f"parent {name!r} of {seen[-1]!r} has no budget")
            seen.append(name)
            if len(seen) > MAX_LEVELS:
                raise HierarchyError(
                    f"{user!r} sits more than {MAX_LEVELS} levels deep: {' -> '.join(seen)}"
                )
            name = parent.parent


def _height(state: LedgerState, user: str, limit: int = MAX_LEVELS + 1) -> int:
    """Levels in the tree below and including ``user`` (1 for a budget without children)."""
    tallest = 0
    if limit > 0:
        for child in state.children(user):
            tallest = max(tallest, _height(state, child, limit - 1))
    return 1 + tallest


def delete(state: LedgerState, user: str, now: float) -> tuple[Outcome, Changes | None]:
    """Remove ``user``'s budget, unless others name it as their parent."""
    if state.record(user) is None:
        return Outcome(None, replayed=True), NO_CHANGES
    children = sorted(state.children(user))
    if children:
        shown = ", ".join(repr(c) for c in children[:5]) + (", ..." if len(children) > 5 else "")
        raise HierarchyError(f"budget {user!r} is the parent of {shown}; delete or move them first")
    return Outcome(None), Changes(records={user: None}, events=[HistoryEvent(now, "delete", user)])


def reset(state: LedgerState, user: str, now: float) -> tuple[Outcome, Changes | None]:
    """Zero ``user``'s spend and per-model breakdown (its ancestors keep theirs)."""
    current = state.record(user)
    if current is None:
        raise UnknownUserError(user)
    record = current.copy()
    record.current_cost = ZERO
    record.model_cost = None
    start = record.last_updated_at if record.period is not None else None
    event = HistoryEvent(now, "reset", user, window_start=start)
    return Outcome(record), Changes(records={user: record}, events=[event])


def roll(state: LedgerState, levels: Sequence[Level], now: float) -> tuple[Outcome, Changes | None]:
    """Start each budget's window if it is newer than its current period."""
    changes = Changes()
    rolled = []
    first: UserRecord | None = None
    for i, (user, window) in enumerate(levels):
        current = state.record(user)
        if current is None:
            if i == 0:
                raise UnknownUserError(user)
            continue
        if not window.describes(current):
            raise ChainChanged(user)
        record = current.copy()
        if _advance(record, window):
            changes.records[user] = record
            changes.events.append(_event(now, "roll", user, record))
            rolled.append(user)
        if first is None:
            first = record
    return Outcome(first, rolled=tuple(rolled)), changes or NO_CHANGES


# -- spending ------------------------------------------------------------------------------------
def charge(
    state: LedgerState,
    levels: Sequence[Level],
    model: str | None,
    amount: Decimal,
    now: float,
    limit_check: bool = False,
    key: str | None = None,
    thresholds: Sequence[Decimal] = (),
    max_models: int = MAX_MODELS,
    tokens: dict[str, int] | None = None,
) -> tuple[Outcome, Changes | None]:
    """Add ``amount`` to the spend of every level (and to ``model``'s share), in each level's
    window. With ``limit_check``, refuse (BudgetExceededError) unless it fits at every level."""
    user = levels[0][0]
    fingerprint = ""
    if key is not None:
        fingerprint = request_fingerprint(user, model, amount)
        replay = _replay(state, key, fingerprint, user)
        if replay is not None:
            return replay, NO_CHANGES
    records, rolled = _verified(state, levels)
    if limit_check:
        for record, (name, _) in zip(records, levels, strict=True):
            _check_fits(state, name, record, amount, now)
    changed: dict[str, UserRecord | None] = {}
    alerts: list[Alert] = []
    for record, (name, _) in zip(records, levels, strict=True):
        _spend(record, model, amount, max_models)
        if thresholds:
            _crossings(name, record, thresholds, alerts)
        changed[name] = record
    outcome = Outcome(records[0], None, rolled, tuple(alerts))
    event = _event(now, "charge", user, records[0], model, amount, tokens=tokens)
    return outcome, Changes(changed, None, None if key is None else (key, fingerprint), [event])


def hold(
    state: LedgerState,
    levels: Sequence[Level],
    hold_id: str,
    amount: Decimal,
    expires_at: float,
    now: float,
    model: str | None = None,
    limit_check: bool = True,
) -> tuple[Outcome, Changes | None]:
    """Hold ``amount`` against every level until ``expires_at``; with ``limit_check`` (the
    default), BudgetExceededError unless it fits at every level. Repeating a hold id for the same
    user and amount answers with the hold already taken."""
    user = levels[0][0]
    existing = state.hold(hold_id)
    if existing is not None:
        if existing.user != user or existing.amount != amount:
            raise IdempotencyConflictError(f"hold id {hold_id!r} is already used by another hold")
        return Outcome(state.record(user), hold=existing, replayed=True), NO_CHANGES
    records, rolled = _verified(state, levels)
    if limit_check:
        for record, (name, _) in zip(records, levels, strict=True):
            _check_fits(state, name, record, amount, now)
    taken = HoldRecord(
        hold_id=hold_id,
        user=user,
        amount=amount,
        levels=tuple(
            (name, record.last_updated_at if record.period is not None else None)
            for record, (name, _) in zip(records, levels, strict=True)
        ),
        expires_at=expires_at,
        created_at=now,
        model=model,
    )
    event = _event(now, "hold", user, records[0], model, amount=amount, hold_id=hold_id)
    changes = Changes(holds={hold_id: taken}, events=[event])
    for record, (name, _) in zip(records, levels, strict=True):
        if name in rolled:
            changes.records[name] = record
    return Outcome(records[0], hold=taken, rolled=rolled), changes


def settle(
    state: LedgerState,
    hold_id: str,
    amount: Decimal,
    model: str | None,
    thresholds: Sequence[Decimal] = (),
    known: HoldRecord | None = None,
    max_models: int = MAX_MODELS,
    now: float = 0.0,
    tokens: dict[str, int] | None = None,
) -> tuple[Outcome, Changes | None]:
    """Record the actual ``amount`` of a hold and free it. It counts at each level whose budget is
    still in the period the hold was taken in. ``known`` stands in for a hold the store no longer
    has (long expired), so its cost is still recorded."""
    taken = state.hold(hold_id) or known
    if taken is None:
        raise UnknownHoldError(hold_id)
    if taken.state == "settled":
        return Outcome(state.record(taken.user), hold=taken, replayed=True), NO_CHANGES
    changes = Changes()
    alerts: list[Alert] = []
    first: UserRecord | None = None
    for name, start in taken.levels:
        current = state.record(name)
        if current is None:
            continue
        if _in_period(current, start):
            record = current.copy()
            _spend(record, model or taken.model, amount, max_models)
            _crossings(name, record, thresholds, alerts)
            changes.records[name] = record
            current = record
        if name == taken.user:
            first = current
    done = dataclasses.replace(taken, state="settled", settled=amount, model=model or taken.model)
    changes.holds[hold_id] = done
    start = taken.levels[0][1] if taken.levels else None
    changes.events.append(
        HistoryEvent(now, "settle", taken.user, done.model, amount, None, tokens, hold_id, start)
    )
    return Outcome(first, hold=done, alerts=tuple(alerts)), changes


def release(state: LedgerState, hold_id: str, now: float) -> tuple[Outcome, Changes | None]:
    """Free a hold, recording nothing; a hold already settled or released is left as it is."""
    taken = state.hold(hold_id)
    if taken is None:
        raise UnknownHoldError(hold_id)
    if taken.state != "open":
        return Outcome(state.record(taken.user), hold=taken, replayed=True), NO_CHANGES
    done = dataclasses.replace(taken, state="released")
    start = taken.levels[0][1] if taken.levels else None
    event = HistoryEvent(
        now, "release", taken.user, taken.model, ZERO, taken.amount, None, hold_id, start
    )
    return Outcome(state.record(taken.user), hold=done), Changes(
        holds={hold_id: done}, events=[event]
    )


# -- the parts -----------------------------------------------------------------------------------
def _event(
    now: float,
    kind: str,
    user: str,
    record: UserRecord,
    model: str | None = None,
    cost: Decimal = ZERO,
    *,
    amount: Decimal | None = None,
    tokens: dict[str, int] | None = None,
    hold_id: str | None = None,
) -> HistoryEvent:
    """The history event of a change to ``user``'s budget, in the period ``record`` is in.
    (Settles, releases and resets record only the start of their period, which is all a store
    that computes no calendar knows of it; deletes record none.)"""
    if record.period is None:
        return HistoryEvent(now, kind, user, model, cost, amount, tokens, hold_id)
    return HistoryEvent(
        now,
        kind,
        user,
        model,
        cost,
        amount,
        tokens,
        hold_id,
        record.last_updated_at,
        record.period_end(),
    )


def _verified(
    state: LedgerState, levels: Sequence[Level]
) -> tuple[list[UserRecord], tuple[str, ...]]:
    """Copies of the levels' records, each advanced to its window; ChainChanged if the levels no
    longer describe the hierarchy."""
    if len(levels) == 1:  # the common case: a budget without parent
        ((name, window),) = levels
        current = state.record(name)
        if current is None:
            raise UnknownUserError(name)
        if current.parent is not None or not window.describes(current):
            raise ChainChanged(name)
        record = current.copy()
        return [record], ((name,) if _advance(record, window) else ())
    records = []
    rolled: list[str] = []
    last = len(levels) - 1
    for i, (name, window) in enumerate(levels):
        current = state.record(name)
        if current is None:
            if i == 0:
                raise UnknownUserError(name)
            raise ChainChanged(name)
        expected_parent = levels[i + 1][0] if i < last else None
        if current.parent != expected_parent or not window.describes(current):
            raise ChainChanged(name)
        record = current.copy()
        if _advance(record, window):
            rolled.append(name)
        records.append(record)
    return records, tuple(rolled)


def _advance(record: UserRecord, window: Window) -> bool:
    """Start ``window`` if it is later than the record's current period; True if it did."""
    start = window.start
    if start is None or record.period is None:
        return False
    current = record.last_updated_at
    if current is not None and current >= start:
        return False
    record.current_cost = ZERO
    record.model_cost = None
    record.fired = ()
    record.last_updated_at = start
    record._period_end = window.end
    return True


def _in_period(record: UserRecord, start: float | None) -> bool:
    if record.period is None:
        return start is None
    return start is not None and record.last_updated_at == start


def _check_fits(
    state: LedgerState, name: str, record: UserRecord, amount: Decimal, now: float
) -> None:
    holding = held(state, name, now)
    after = money.add(money.add(record.current_cost, holding), amount)
    if after > record.total_budget:
        raise BudgetExceededError(
            money.to_float(after),
            money.to_float(record.total_budget),
            f"budget {name!r} would reach {after} (spent {record.current_cost}, held {holding}, "
            f"this {amount}) of {record.total_budget}",
            user=name,
        )


def _spend(record: UserRecord, model: str | None, amount: Decimal, max_models: int) -> None:
    """Add ``amount`` to the spend and to ``model``'s share; a model new to the breakdown must
    be a valid name and keep the breakdown within ``max_models`` (TooManyModelsError)."""
    if model is None:
        record.current_cost = money.add(record.current_cost, amount)
        return
    breakdown = record.model_cost if record.model_cost is not None else {}
    if model not in breakdown:
        names.check_model(model)
        if len(breakdown) >= max_models:
            raise too_many_models(model, max_models)
    record.current_cost = money.add(record.current_cost, amount)
    breakdown[model] = money.add(breakdown.get(model, ZERO), amount)
    record.model_cost = breakdown


def too_many_models(model: str, max_models: int) -> TooManyModelsError:
    """The error for a model that would take a budget's breakdown past ``max_models``."""
    return TooManyModelsError(
        f"model {names.shown(model)} would be distinct model number {max_models + 1} of this "
        f"budget's period; the cap is {max_models}",
        field="model",
    )


def _crossings(
    name: str, record: UserRecord, thresholds: Sequence[Decimal], alerts: list[Alert]
) -> None:
    """Mark and announce the thresholds ``record``'s spend has reached and not announced yet."""
    if not thresholds:
        return
    spent, budget = record.current_cost, record.total_budget
    crossed = [
        f
        for f in thresholds
        if f not in record.fired and spent > ZERO and spent >= money.multiply(budget, f)
    ]
    if not crossed:
        return
    record.fired = tuple(sorted({*record.fired, *crossed}))
    start = record.last_updated_at if record.period is not None else None
    for fraction in sorted(crossed):
        alerts.append(
            Alert(name, float(fraction), money.to_float(spent), money.to_float(budget), start)
        )


def _replay(state: LedgerState, key: str, fingerprint: str, user: str) -> Outcome | None:
    seen = state.seen(key)
    if seen is None:
        return None
    if seen != fingerprint:
        raise IdempotencyConflictError(
            f"idempotency_key {key!r} was already used for another request"
        )
    return Outcome(state.record(user), replayed=True)
