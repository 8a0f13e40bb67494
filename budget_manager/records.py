"""One user's budget record, its LiteLLM-compatible JSON form, and the pure ledger operations on it.

On disk and on the wire a record keeps LiteLLM's keys and types (``total_budget``, ``current_cost``,
``model_cost``, ``duration`` in days, ``created_at``, ``last_updated_at``); this library adds
``period`` (the duration as given, e.g. ``"monthly"`` or ``"12h"``) and keeps any other keys it finds.
``last_updated_at`` is the start of the current period. Budgets in a hierarchy name their
``parent``; ``alerts_fired`` lists the alert fractions already announced in the current period;
``on_unknown_model`` / ``on_store_error`` are the budget's own policies (absent: the manager's).

Holds (reservations) are kept beside the user dict as :class:`HoldRecord` objects.
"""

from __future__ import annotations

import json
import json.encoder
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import money, names, periods
from .errors import CorruptStoreError, InvalidInputError
from .money import ZERO
from .periods import Period

#: Distinct models a budget's per-model breakdown may hold in one period, unless a store is
#: configured otherwise: it bounds the size of every record.
MAX_MODELS = 100

_OWN_KEYS = frozenset(
    ("total_budget", "current_cost", "model_cost", "duration", "created_at", "last_updated_at")
) | {"period", "parent", "alerts_fired", "on_unknown_model", "on_store_error"}
UNKNOWN_MODEL_POLICIES = ("refuse", "allow")
STORE_ERROR_POLICIES = ("closed", "open")


class UserRecord:
    """A user's budget: exact amounts, the reset period, and when the current period started."""

    __slots__ = (
        "_period_end",
        "created_at",
        "current_cost",
        "duration",
        "extra",
        "fired",
        "last_updated_at",
        "model_cost",
        "on_store_error",
        "on_unknown_model",
        "parent",
        "period",
        "total_budget",
    )

    def __init__(
        self,
        total_budget: Decimal,
        current_cost: Decimal = ZERO,
        model_cost: dict[str, Decimal] | None = None,
        period: Period | None = None,
        created_at: float | None = None,
        last_updated_at: float | None = None,
        duration: float | int | None = None,
        extra: dict[str, Any] | None = None,
        parent: str | None = None,
        fired: tuple[Decimal, ...] = (),
        on_unknown_model: str | None = None,
        on_store_error: str | None = None,
    ) -> None:
        self.total_budget = total_budget
        self.current_cost = current_cost
        self.model_cost = model_cost or None  # None while empty: most users have no breakdown yet
        self.period = period
        self.created_at = created_at
        self.last_updated_at = last_updated_at
        self.duration = duration if duration is not None or period is None else period.days
        self.extra = extra or None
        self.parent = parent
        self.fired = fired
        self.on_unknown_model = on_unknown_model
        self.on_store_error = on_store_error
        self._period_end: float | None = None

    def copy(self) -> UserRecord:
        # Slot by slot rather than through __init__: this is on every change's path.
        clone = _new_record(UserRecord)
        clone.total_budget = self.total_budget
        clone.current_cost = self.current_cost
        clone.model_cost = dict(self.model_cost) if self.model_cost else None
        clone.period = self.period
        clone.created_at = self.created_at
        clone.last_updated_at = self.last_updated_at
        duration, period = self.duration, self.period
        clone.duration = duration if duration is not None or period is None else period.days
        clone.extra = dict(self.extra) if self.extra else None
        clone.parent = self.parent
        clone.fired = self.fired
        clone.on_unknown_model = self.on_unknown_model
        clone.on_store_error = self.on_store_error
        clone._period_end = self._period_end
        return clone

    # -- periods ---------------------------------------------------------------------------
    @property
    def anchor(self) -> float:
        """The instant periods are counted from."""
        if self.created_at is not None:
            return self.created_at
        return self.last_updated_at or 0.0

    def period_end(self) -> float | None:
        """When the current period ends (``None`` for budgets that never reset)."""
        if self.period is None:
            return None
        if self._period_end is None:
            start = self.last_updated_at if self.last_updated_at is not None else self.anchor
            self._period_end = periods.period_bounds(self.period, self.anchor, start)[1]
        return self._period_end

    def is_due(self, now: float) -> bool:
        """Whether the current period has ended at ``now``."""
        end = self.period_end()
        return end is not None and now >= end

    # -- views -----------------------------------------------------------------------------
    def spent(self, now: float) -> Decimal:
        """Spend in the period containing ``now``."""
        return ZERO if self.is_due(now) else self.current_cost

    def spent_by_model(self, now: float) -> dict[str, Decimal]:
        if self.is_due(now) or not self.model_cost:
            return {}
        return dict(self.model_cost)

    def remaining(self, now: float) -> Decimal:
        return self.total_budget - self.spent(now)

    def to_public(self) -> dict[str, Any]:
        """The record as LiteLLM returns it: plain floats, a fresh dict the caller may keep."""
        breakdown = self.model_cost
        costs = {m: float(c) for m, c in breakdown.items()} if breakdown else {}
        period = self.period
        out: dict[str, Any]
        if period is None:
            out = {
                "total_budget": float(self.total_budget),
                "current_cost": float(self.current_cost),
                "model_cost": costs,
            }
        else:
            out = {
                "total_budget": float(self.total_budget),
                "current_cost": float(self.current_cost),
                "model_cost": costs,
                "duration": self.duration,
                "created_at": self.created_at,
                "last_updated_at": self.last_updated_at,
                "period": period.name,
            }
        if self.parent is not None or self.fired or self.on_unknown_model or self.on_store_error:
            for key, value in _optional(self).items():
                out[key] = [float(f) for f in value] if key == "alerts_fired" else value
        if self.extra:  # keys of its own first, as they were read
            return {**self.extra, **out}
        return out

    def __repr__(self) -> str:
        return f"UserRecord({to_json(self)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserRecord) and to_json(self) == to_json(other)

    __hash__ = None  # type: ignore[assignment]


_new_record = object.__new__


# -- new records --------------------------------------------------------------------------------
def new_record(
    total_budget: Decimal,
    period: Period | None,
    created_at: float,
    period_end: float | None = None,
) -> UserRecord:
    """A fresh budget whose first period starts at ``created_at``.

    ``period_end``: the end of that first period when the caller has already computed it
    (``period_bounds(period, created_at, created_at)[1]``), so it is not computed again.
    """
    if period is None:
        return UserRecord(total_budget)
    record = UserRecord(
        total_budget, period=period, created_at=created_at, last_updated_at=created_at
    )
    record._period_end = period_end
    return record


# -- JSON ------------------------------------------------------------------------------------
# What json.dumps does for a str, without its Python-level overhead.
_ascii_json_string = json.encoder.encode_basestring_ascii


def quote(text: object) -> str:
    """``json.dumps(text)``, fast for the usual case of a str."""
    return _ascii_json_string(text) if type(text) is str else json.dumps(text)


def _num(value: Decimal | float | int | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_json(record: UserRecord) -> str:
    """The record as one line of JSON, amounts written exactly.

    This is on every change's path (the journal line), so it is one f-string per part rather than
    a list joined, and amounts use ``!s`` (``str()``, the same text as the format() an f-string
    would call, in a third of the time).
    """
    breakdown = record.model_cost
    if breakdown:
        inner = ", ".join([f"{quote(m)}: {c!s}" for m, c in breakdown.items()])
        text = (
            f'{{"total_budget": {record.total_budget!s}, "current_cost": {record.current_cost!s}, '
            f'"model_cost": {{{inner}}}'
        )
    else:
        text = (
            f'{{"total_budget": {record.total_budget!s}, "current_cost": {record.current_cost!s}, '
            '"model_cost": {}'
        )
    period = record.period
    if period is not None:
        created, updated = record.created_at, record.last_updated_at
        text += (
            f', "duration": {_num(record.duration)}, '
            f'"created_at": {created!r}, "last_updated_at": {updated!r}, '
            f'"period": {quote(period.name)}'
            if type(created) is float and type(updated) is float
            else f', "duration": {_num(record.duration)}, "created_at": {_num(created)}, '
            f'"last_updated_at": {_num(updated)}, "period": {quote(period.name)}'
        )
    if (
        record.parent is not None
        or record.fired
        or record.on_unknown_model
        or record.on_store_error
    ):
        text += "".join(f", {quote(k)}: {_dump_extra(v)}" for k, v in _optional(record).items())
    if record.extra:
        text += "".join(f", {json.dumps(k)}: {_dump_extra(v)}" for k, v in record.extra.items())
    return text + "}"


def _optional(record: UserRecord) -> dict[str, Any]:
    """The keys a record has only when they are set (so LiteLLM's records stay as they were)."""
    out: dict[str, Any] = {}
    if record.parent is not None:
        out["parent"] = record.parent
    if record.fired:
        out["alerts_fired"] = _ExactList(record.fired)
    if record.on_unknown_model is not None:
        out["on_unknown_model"] = record.on_unknown_model
    if record.on_store_error is not None:
        out["on_store_error"] = record.on_store_error
    return out


class _ExactList(list[Decimal]):
    """Decimals that ``_dump_extra`` writes exactly."""


def _dump_extra(value: Any) -> str:
    if isinstance(value, _ExactList):
        return "[" + ", ".join(str(d) for d in value) + "]"
    return json.dumps(value, default=_decimal_default)


def _decimal_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def loads(text: str | bytes) -> Any:
    """Parse JSON keeping every non-integer number as an exact Decimal."""
    return json.loads(text, parse_float=Decimal)


def from_json(user: str, data: Any) -> UserRecord:
    """A record from its JSON object (LiteLLM's or ours); CorruptStoreError names what is wrong."""
    if not isinstance(data, dict):
        raise CorruptStoreError(f"budget record of user {user!r} is not an object: {data!r}")
    try:
        if "total_budget" not in data:
            raise InvalidInputError("it has no total_budget")
        total = money.to_money(data["total_budget"], "total_budget")
        spent = money.to_money(data.get("current_cost", 0), "current_cost")
        breakdown = _model_costs(data.get("model_cost"))
        period = periods.period_from_record(data.get("duration"), data.get("period"))
        created = _timestamp(data.get("created_at"), "created_at")
        updated = _timestamp(data.get("last_updated_at"), "last_updated_at")
        parent = data.get("parent")
        if parent is not None:
            names.check(parent, "parent")
        fired = _fractions(data.get("alerts_fired"))
        unknown_model = _choice(data.get("on_unknown_model"), "on_unknown_model")
        store_error = _choice(data.get("on_store_error"), "on_store_error")
    except InvalidInputError as exc:
        raise CorruptStoreError(f"budget record of user {user!r} is invalid: {exc}") from None
    if _OWN_KEYS.issuperset(data):
        extra = None
    else:
        extra = {k: v for k, v in data.items() if k not in _OWN_KEYS} or None
        if extra:
            unrepresentable = _non_finite(extra)
            if unrepresentable is not None:
                raise CorruptStoreError(
                    f"budget record of user {user!r} is invalid: {unrepresentable} is a number "
                    "JSON cannot carry (NaN or infinite)"
                )
    duration = data.get("duration")
    if period is not None:
        if created is None:
            created = updated if updated is not None else 0.0
        if updated is None:
            updated = created
        duration = _plain_number(duration) if duration is not None else None
    return UserRecord(
        total,
        spent,
        breakdown,
        period,
        created,
        updated,
        duration,
        extra,
        parent,
        fired,
        unknown_model,
        store_error,
    )


def _fractions(value: Any) -> tuple[Decimal, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInputError(f"alerts_fired must be a list of fractions, got {value!r}")
    return tuple(sorted(money.to_money(f, "alerts_fired") for f in value))


def _choice(value: Any, what: str) -> str | None:
    allowed = UNKNOWN_MODEL_POLICIES if what == "on_unknown_model" else STORE_ERROR_POLICIES
    if value is None or value in allowed:
        return value  # type: ignore[no-any-return]
    raise InvalidInputError(f"{what} must be one of {allowed}, got {value!r}")


def _non_finite(value: Any, where: str = "") -> str | None:
    """Where in ``value`` a NaN or infinite number is, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    if isinstance(value, Decimal) and not value.is_finite():
        return where or "value"
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite(item, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _non_finite(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def _model_costs(value: Any) -> dict[str, Decimal] | None:
    # LiteLLM's get_model_cost() falls back to 0 and old files may hold that; treat it as empty.
    if value is None or value == 0:
        return None
    if not isinstance(value, dict):
        raise InvalidInputError(f"model_cost must be an object, got {value!r}")
    return {str(m): money.to_money(c, f"model_cost[{m!r}]") for m, c in value.items()} or None


def _timestamp(value: Any, what: str) -> float | None:
    if value is None:
        return None
    kind = type(value)
    if kind is Decimal or kind is float or kind is int:
        number = float(value)
        if math.isfinite(number):
            return number
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidInputError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{what} must be finite, got {value!r}")
    return number


def _plain_number(value: Any) -> float | int:
    return float(value) if isinstance(value, Decimal) else value


def dump_user_dict(records: dict[str, UserRecord]) -> str:
    """A whole user dict as JSON text, one user per line (LiteLLM's ``user_cost.json`` format)."""
    if not records:
        return "{}\n"
    body = ",\n".join([f"  {quote(u)}: {to_json(r)}" for u, r in records.items()])
    return "{\n" + body + "\n}\n"


# -- holds -----------------------------------------------------------------------------------------
HOLD_STATES = ("open", "settled", "released")


@dataclass(frozen=True, slots=True)
class HoldRecord:
    """A hold (reservation) on a user's budget and on each of its ancestors'.

    ``levels`` are the budgets it holds against, the user's first, each with the start of the period
    it was taken in (None for budgets that never reset): its cost counts in that period. A hold is
    open until settled or released; an open hold past ``expires_at`` holds nothing any more, but can
    still be settled (a real cost is never dropped). ``settled`` is the amount a settle recorded.
    """

    hold_id: str
    user: str
    amount: Decimal
    levels: tuple[tuple[str, float | None], ...]
    expires_at: float
    created_at: float
    model: str | None = None
    state: str = "open"
    settled: Decimal | None = None

    def holds_at(self, now: float) -> bool:
        """Whether it still holds its amount at ``now``."""
        return self.state == "open" and now < self.expires_at

    def touches(self, user: str) -> bool:
        """Whether it holds against ``user``'s budget (as the user or as an ancestor)."""
        return any(level == user for level, _ in self.levels)

    def to_public(self) -> dict[str, Any]:
        """The hold as callers see it: plain floats."""
        return {
            "hold_id": self.hold_id,
            "user": self.user,
            "amount": float(self.amount),
            "model": self.model,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "state": self.state,
            "settled": None if self.settled is None else float(self.settled),
            "levels": [level for level, _ in self.levels],
        }


def hold_to_json(hold: HoldRecord) -> str:
    """The hold as one line of JSON, amounts written exactly."""
    levels = ", ".join(f"[{quote(u)}, {_num(start)}]" for u, start in hold.levels)
    settled = "null" if hold.settled is None else f'"{hold.settled}"'
    return (
        f'{{"hold_id": {quote(hold.hold_id)}, "user": {quote(hold.user)}, '
        f'"amount": "{hold.amount}", "levels": [{levels}], "expires_at": {hold.expires_at!r}, '
        f'"created_at": {hold.created_at!r}, "model": {quote(hold.model) if hold.model else "null"}, '
        f'"state": {quote(hold.state)}, "settled": {settled}}}'
    )


def hold_from_json(data: Any) -> HoldRecord:
    """A hold from its JSON object; CorruptStoreError names what is wrong."""
    try:
        levels = tuple(
            (str(user), None if start is None else float(start)) for user, start in data["levels"]
        )
        settled = data.get("settled")
        state = data.get("state", "open")
        if state not in HOLD_STATES:
            raise ValueError(f"unknown state {state!r}")
        return HoldRecord(
            hold_id=str(data["hold_id"]),
            user=str(data["user"]),
            amount=money.parse_money(str(data["amount"]), "amount"),
            levels=levels,
            expires_at=float(data["expires_at"]),
            created_at=float(data["created_at"]),
            model=data.get("model"),
            state=state,
            settled=None if settled is None else money.parse_money(str(settled), "settled"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptStoreError(f"hold record {str(data)[:200]} is invalid: {exc}") from None
