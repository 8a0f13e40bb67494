"""The Redis store's data layout and wire format, as pure functions: key names, how money, budgets
and holds are written into Redis and read back, the script calls each store operation makes, and
how script replies become :class:`~budget_manager.ledger.Outcome` objects or exceptions.

No I/O happens here. Each operation is a *plan*: a generator that yields the :class:`Call` objects
it needs and receives their raw replies, so a synchronous executor (:mod:`.redis`) and an asyncio
one can drive the same plans.

Layout of one project (every key carries the project's hash tag, so all of them live in one
Redis Cluster slot and each script touches one slot)::

    <prefix>:{<tag>}:marker        string  set once; vanishes only if Redis lost the data
    <prefix>:{<tag>}:users         hash    user -> parent ('' for none)
    <prefix>:{<tag>}:tree          zset    "parent\\0child", listed by prefix (children of a budget)
    <prefix>:{<tag>}:u:<user>      hash    the budget (fields below); after a delete, only the
                                           sum of the holds still open against it (h)
    <prefix>:{<tag>}:o:<user>      zset    open holds against the budget: "amount|hold id" by expiry
    <prefix>:{<tag>}:h:<hold id>   string  a hold (fields separated by \\x02), kept
                                           HOLD_RETENTION after it expires
    <prefix>:{<tag>}:k:<digest>    string  an idempotency key's request fingerprint, KEY_RETENTION

``<tag>`` is the first 16 hex digits of the SHA-256 of the project name, so any name (braces
included) gives a valid tag. A budget's fields: ``b`` total budget, ``c`` current cost, ``m:<model>``
per-model cost, ``p`` period name, ``ca`` created at, ``lu`` start of the current period, ``pa``
parent, ``f`` alert fractions fired (comma-separated), ``h`` sum of its open holds, ``s`` JSON of
what only Python reads (LiteLLM's ``duration``, unknown keys, the budget's own policies).

Money is decimal text with at most 12 decimals ("0.0001725"), never a float: amounts are rounded
half-even to 1e-12 USD on the way in, and must be below 1e15 USD. The scripts add and compare it
exactly as whole dollars plus 1e-12 units (see ``resources/redis/lib.lua``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import uuid
from collections.abc import Generator, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, TypeVar

from .. import money, names
from ..errors import (
    BudgetExceededError,
    CorruptStoreError,
    HierarchyError,
    IdempotencyConflictError,
    InvalidBudgetError,
    InvalidInputError,
    StoreError,
    UnknownHoldError,
    UnknownUserError,
)
from ..events import Alert
from ..history import HistoryEvent, latest, selected
from ..ledger import (
    MAX_LEVELS,
    ChainChanged,
    Level,
    Outcome,
    request_fingerprint,
    too_many_models,
)
from ..money import ZERO
from ..periods import Period, parse_duration
from ..records import HoldRecord, UserRecord, loads

T = TypeVar("T")

#: How long a hold's record is kept after it expires, so a late or repeated settle answers
#: correctly (seconds; as the memory and JSON stores keep theirs).
HOLD_RETENTION = 86_400.0
#: How long an idempotency key is remembered (seconds).
KEY_RETENTION = 86_400
#: Amounts are kept in units of this many USD (rounded half-even to it on the way in, as every
#: store keeps them).
RESOLUTION = money.RESOLUTION
#: Every amount and every sum kept must be below this many USD.
LIMIT = Decimal(10) ** 15
#: Budgets read per script call by :func:`records`.
BATCH = 500
DEFAULT_PREFIX = "bm"


class Call(NamedTuple):
    """One script call: ``EVALSHA <script> keys... <marker> args...``. ``retry``: whether sending
    it again after a lost connection cannot apply it twice."""

    script: str
    keys: list[str]
    args: list[str]
    retry: bool = True


Plan = Generator[Call, Any, T]


class LostData(StoreError):
    """The project's marker key vanished: Redis lost its data (restarted without persistence,
    flushed, or evicted keys)."""


class Relevel(Exception):
    """The hold's levels are not the ones passed; the script said which they are."""

    def __init__(self, levels: bytes) -> None:
        super().__init__("the hold's levels differ")
        self.levels = levels


# -- keys ------------------------------------------------------------------------------------------
class Keys:
    """Key names of one project under one prefix."""

    __slots__ = ("base", "events", "marker", "tree", "users")

    def __init__(self, prefix: str, project: str) -> None:
        tag = hashlib.sha256(project.encode("utf-8")).hexdigest()[:16]
        self.base = f"{prefix}:{{{tag}}}:"
        self.marker = self.base + "marker"
        self.users = self.base + "users"
        self.tree = self.base + "tree"
        #: the history stream, and the id it last gave an event
        self.events = [self.base + "events", self.base + "events:last"]

    def record(self, user: str) -> str:
        return self.base + "u:" + user

    def open(self, user: str) -> str:
        return self.base + "o:" + user

    def hold(self, hold_id: str) -> str:
        return self.base + "h:" + hold_id

    def key(self, key: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.base + "k:" + digest


class Recording(NamedTuple):
    """How a project's history is kept: its retention and the stream's cap (entries)."""

    retention: float
    cap: int

    def tail(self, now: float | None, tokens: dict[str, int] | None, end: str = "") -> list[str]:
        """What every change's script takes last: the event's time, the retention (ms), the
        cap, the tokens (JSON) and the window end (see lib.lua's history_event)."""
        return [
            repr(time.time() if now is None else float(now)),
            str(int(self.retention * 1000)),
            str(self.cap),
            "" if tokens is None else json.dumps(tokens),
            end,
        ]


def check_prefix(prefix: str) -> str:
    """``prefix`` if it can start key names (no braces: they would move the hash tag)."""
    if not prefix or any(c in prefix for c in "{} ") or not prefix.isprintable():
        raise InvalidInputError(
            f"Redis key prefix must be non-empty printable text without braces or spaces, "
            f"got {prefix!r}"
        )
    return prefix


# -- money -----------------------------------------------------------------------------------------
def encode_money(amount: Decimal, what: str = "amount") -> str:
    """``amount`` as the store keeps it: decimal text, rounded half-even to :data:`RESOLUTION`,
    without trailing zeros (so equal amounts have one spelling)."""
    text = str(amount)
    dot = text.find(".")
    # The common case (plain digits, at most 12 decimals, below LIMIT) without Decimal arithmetic.
    if "E" not in text and "-" not in text and -1 < dot <= 15 and len(text) - dot <= 13:
        text = text.rstrip("0").rstrip(".")
        return text or "0"
    if amount < 0:
        raise InvalidBudgetError(f"{what} must not be negative, got {amount}")
    if not amount < LIMIT:
        raise InvalidBudgetError(
            f"{what} must be below {LIMIT:,} USD in the Redis store, got {amount}"
        )
    amount = money.rounded(amount)
    if not amount:
        return "0"
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def decode_money(raw: bytes) -> Decimal:
    return Decimal(raw.decode())


def _stamp(value: float | None) -> str:
    """A timestamp as text that parses back to the same float ('' for None)."""
    return "" if value is None else repr(float(value))


def fraction_text(fraction: Decimal) -> str:
    """An alert fraction's one spelling (0.80 and 0.8 are the same fraction)."""
    return format(fraction.normalize(), "f")


def encode_thresholds(thresholds: Sequence[Decimal]) -> list[str]:
    """Count, then for each fraction (ascending): its text, its digits, the power of ten
    dividing them (so the script compares spend * 10^k with budget * digits exactly)."""
    if not thresholds:
        return ["0"]
    out = [str(len(thresholds))]
    for fraction in sorted(set(thresholds)):
        normal = fraction.normalize()
        _, digits, exponent = normal.as_tuple()
        assert isinstance(exponent, int)
        numerator = "".join(map(str, digits)) + "0" * max(exponent, 0)
        out += (format(normal, "f"), numerator, str(max(-exponent, 0)))
    out[0] = str((len(out) - 1) // 3)
    return out


# -- budgets ---------------------------------------------------------------------------------------
def encode_record(record: UserRecord) -> list[str]:
    """The fields and values of a budget's hash."""
    out = ["b", encode_money(record.total_budget, "total_budget")]
    out += ("c", encode_money(record.current_cost, "current_cost"))
    period = record.period
    if period is not None:
        out += ("p", period.name)
    if record.created_at is not None:
        out += ("ca", _stamp(record.created_at))
    if record.last_updated_at is not None:
        out += ("lu", _stamp(record.last_updated_at))
    if record.parent is not None:
        out += ("pa", record.parent)
    if record.fired:
        out += ("f", ",".join(fraction_text(f) for f in record.fired))
    static: dict[str, Any] = {}
    duration = record.duration
    if duration is not None and (period is None or duration != period.days):
        static["duration"] = duration
    if record.extra:
        static["extra"] = record.extra
    if record.on_unknown_model is not None:
        static["on_unknown_model"] = record.on_unknown_model
    if record.on_store_error is not None:
        static["on_store_error"] = record.on_store_error
    if static:
        out += ("s", json.dumps(static, default=_plain))
    if record.model_cost:
        for model, cost in record.model_cost.items():
            out += ("m:" + model, encode_money(cost, f"model_cost[{model!r}]"))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@functools.lru_cache(maxsize=256)
def _period(name: str) -> Period | None:
    return parse_duration(name)


_new = object.__new__


def decode_record(flat: Sequence[bytes], user: str = "?") -> UserRecord | None:
    """A budget from its hash's fields and values (HGETALL), or None if it has none (a hash
    with no total budget is what a deleted budget's open holds left)."""
    total: Decimal | None = None
    spent = ZERO
    period: Period | None = None
    created = updated = None
    parent: str | None = None
    fired: tuple[Decimal, ...] = ()
    models: dict[str, Decimal] | None = None
    static: dict[str, Any] | None = None
    try:
        for i in range(0, len(flat), 2):
            field, value = flat[i], flat[i + 1]
            if field == b"c":
                spent = Decimal(value.decode())
            elif field == b"b":
                total = Decimal(value.decode())
            elif field[:2] == b"m:":
                if models is None:
                    models = {}
                models[field[2:].decode()] = Decimal(value.decode())
            elif field == b"p":
                period = _period(value.decode())
            elif field == b"lu":
                updated = float(value)
            elif field == b"ca":
                created = float(value)
            elif field == b"pa":
                parent = value.decode()
            elif field == b"f":
                fired = tuple(sorted({Decimal(f) for f in value.decode().split(",")}))
            elif field == b"s":
                static = loads(value)
    except (ValueError, InvalidOperation, UnicodeDecodeError, TypeError, AttributeError) as exc:
        raise CorruptStoreError(f"the Redis budget of {user!r} is unreadable: {exc}") from None
    if total is None:
        return None
    # Slot by slot rather than through __init__ (as UserRecord.copy does): every change returns one.
    record: UserRecord = _new(UserRecord)
    record.total_budget = total
    record.current_cost = spent
    record.model_cost = models
    record.period = period
    record.created_at = created
    record.last_updated_at = updated
    record.parent = parent
    record.fired = fired
    record._period_end = None
    if static is None:
        record.duration = None if period is None else period.days
        record.extra = record.on_unknown_model = record.on_store_error = None
    else:
        duration = static.get("duration")
        record.duration = duration if duration is not None or period is None else period.days
        record.extra = static.get("extra") or None
        record.on_unknown_model = static.get("on_unknown_model")
        record.on_store_error = static.get("on_store_error")
    return record


# -- holds -----------------------------------------------------------------------------------------
def level_args(levels: Iterable[tuple[str, float | None]]) -> list[str]:
    """A hold's levels as script arguments: count, then name and period start ('' none) each."""
    out = [""]
    for name, start in levels:
        out += (name, _stamp(start))
    out[0] = str((len(out) - 1) // 2)
    return out


@functools.lru_cache(maxsize=4096)
def decode_levels(raw: bytes) -> tuple[tuple[str, float | None], ...]:
    """A hold's levels as the scripts store them: name and period start, separated by \\x01."""
    parts = raw.decode().split("\x01")
    return tuple(
        (parts[i], float(parts[i + 1]) if parts[i + 1] else None) for i in range(0, len(parts), 2)
    )


def decode_hold(raw: bytes | None, hold_id: str) -> HoldRecord | None:
    """A hold from its string (fields separated by \\x02, see ``read_hold`` in lib.lua), or
    None if there is none."""
    if not raw:
        return None
    try:
        user, amount, levels, expires, created, state, model, settled = raw.split(b"\x02")
        return HoldRecord(
            hold_id,
            user.decode(),
            Decimal(amount.decode()),
            decode_levels(levels),
            float(expires),
            float(created),
            model.decode() or None,
            state.decode(),
            Decimal(settled.decode()) if settled else None,
        )
    except (ValueError, InvalidOperation, UnicodeDecodeError, IndexError) as exc:
        raise CorruptStoreError(f"the Redis hold {hold_id!r} is unreadable: {exc!r}") from None


# -- replies ---------------------------------------------------------------------------------------
def outcome(
    reply: list[Any], user: str, hold_id: str | None = None, new: HoldRecord | None = None
) -> Outcome:
    """The Outcome an operation's reply describes; the ledger's exception if it refused.

    ``new``: the hold as the caller expects it to be after the operation, used when the reply
    gives no hold (a settle of a hold Redis has as the caller knew it) or only its levels (a
    hold just taken)."""
    if reply[0] != b"ok":
        raise refusal(reply, user, hold_id)
    _, replayed, rolled, alerts, record, hold = reply
    taken = None
    if new is not None and not replayed and b"\x02" not in hold:
        taken = new if not hold else _with_levels(new, hold)
    elif hold:
        assert hold_id is not None
        taken = decode_hold(hold, hold_id)
    if taken is not None:
        user = taken.user
    return Outcome(
        decode_record(record, user),
        taken,
        tuple([r.decode() for r in rolled]) if rolled else (),
        tuple([_alert(a) for a in alerts]) if alerts else (),
        replayed == 1,
    )


def _with_levels(h: HoldRecord, raw: bytes) -> HoldRecord:
    levels = decode_levels(raw)
    return HoldRecord(h.hold_id, h.user, h.amount, levels, h.expires_at, h.created_at, h.model)


def _alert(raw: list[bytes]) -> Alert:
    name, fraction, spent, budget, start = (x.decode() for x in raw)
    return Alert(
        name, float(fraction), float(spent), float(budget), float(start) if start else None
    )


def refusal(reply: list[Any], user: str = "", hold_id: str | None = None) -> Exception:
    """The exception an ``{'err', kind, ...}`` reply stands for."""
    kind = reply[1].decode()
    args = [x.decode() if isinstance(x, bytes) else x for x in reply[2:]]
    if kind == "lost":
        return LostData(
            "Redis lost this project's data: its marker key vanished after this process had seen "
            "it (Redis restarted without persistence, was flushed, or evicted keys). Budgets and "
            "holds are refused rather than started again from zero; restore Redis from a backup "
            "(run it with appendonly yes), then open the store again"
        )
    if kind == "unknown_user":
        return UnknownUserError(args[0])
    if kind == "chain":
        return ChainChanged(args[0])
    if kind == "exceeded":
        name, after, spent, held, amount, budget = args
        return BudgetExceededError(
            float(after),
            float(budget),
            f"budget {name!r} would reach {after} (spent {spent}, held {held}, this {amount}) "
            f"of {budget}",
            user=name,
        )
    if kind == "hold_conflict":
        return IdempotencyConflictError(f"hold id {hold_id!r} is already used by another hold")
    if kind == "key_conflict":
        return IdempotencyConflictError(
            f"idempotency_key {hold_id!r} was already used for another request"
        )
    if kind == "unknown_hold":
        return UnknownHoldError(hold_id)
    if kind == "too_many_models":
        return too_many_models(args[1], int(args[0]))
    if kind == "relevel":
        return Relevel(reply[2])
    if kind == "cycle":
        return HierarchyError(f"parent {args[0]!r} of {user!r} would make a cycle")
    if kind == "no_parent":
        return HierarchyError(
            f"parent {args[0]!r} of {user!r} has no budget; create the parent's budget first"
        )
    if kind == "depth":
        return HierarchyError(
            f"budget {user!r} would sit {args[0]} levels deep; at most {MAX_LEVELS} "
            "levels (a user and three ancestors) are allowed"
        )
    if kind == "children":
        shown = ", ".join(repr(c) for c in args[:5]) + (", ..." if len(args) > 5 else "")
        return HierarchyError(
            f"budget {user!r} is the parent of {shown}; delete or move them first"
        )
    return StoreError(f"unexpected reply from a Redis script: {reply!r}")


def _ok(reply: list[Any]) -> list[Any]:
    if reply[0] != b"ok":
        raise refusal(reply)
    return reply


# -- plans: the calls of each operation ------------------------------------------------------------
def _window_args(levels: Sequence[Level]) -> list[str]:
    out = [str(len(levels))]
    for name, (period, anchor, start, _end) in levels:
        out += (name, period or "", _stamp(anchor), _stamp(start))
    return out


def _level_keys(keys: Keys, names: Iterable[str]) -> list[str]:
    base = keys.base
    out: list[str] = []
    for name in names:
        out += (base + "u:" + name, base + "o:" + name)
    return out


def get(keys: Keys, user: str) -> Plan[UserRecord | None]:
    reply = _ok((yield Call("read", [keys.record(user)], ["hash"])))
    return decode_record(reply[1], user)


def users(keys: Keys) -> Plan[list[str]]:
    reply = _ok((yield Call("read", [keys.users], ["fields"])))
    return [u.decode() for u in reply[1]]


def records(keys: Keys) -> Plan[dict[str, UserRecord]]:
    names: list[str] = yield from users(keys)
    out: dict[str, UserRecord] = {}
    for at in range(0, len(names), BATCH):
        batch = names[at : at + BATCH]
        reply = _ok((yield Call("read", [keys.record(u) for u in batch], ["hash"])))
        for user, flat in zip(batch, reply[1:], strict=True):
            record = decode_record(flat, user)
            if record is not None:  # deleted meanwhile
                out[user] = record
    return out


def holds(keys: Keys, user: str | None) -> Plan[list[HoldRecord]]:
    names = [user] if user is not None else (yield from users(keys))
    ids: dict[str, None] = {}
    for at in range(0, len(names), BATCH):
        batch = names[at : at + BATCH]
        reply = _ok((yield Call("read", [keys.open(u) for u in batch], ["members"])))
        for members in reply[1:]:
            for member in members:
                ids[member.split(b"|", 1)[1].decode()] = None
    found: list[HoldRecord] = []
    listed = list(ids)
    for at in range(0, len(listed), BATCH):
        batch = listed[at : at + BATCH]
        reply = _ok((yield Call("read", [keys.hold(i) for i in batch], ["string"])))
        for hold_id, raw in zip(batch, reply[1:], strict=True):
            hold = decode_hold(raw, hold_id)
            if hold is not None and hold.state == "open":
                found.append(hold)
    return found


def read_hold(keys: Keys, hold_id: str) -> Plan[HoldRecord | None]:
    reply = _ok((yield Call("read", [keys.hold(hold_id)], ["string"])))
    return decode_hold(reply[1], hold_id)


def put(
    keys: Keys, user: str, record: UserRecord, recording: Recording, now: float | None
) -> Plan[UserRecord]:
    fields = encode_record(record)
    reply = yield Call(
        "put",
        [keys.users, keys.tree, keys.record(user), *keys.events],
        [
            user,
            record.parent or "",
            str(MAX_LEVELS),
            *fields,
            *recording.tail(now, None, _stamp(record.period_end())),
        ],
    )
    stored = outcome(reply, user).record
    assert stored is not None
    return stored


def delete(keys: Keys, user: str, recording: Recording, now: float | None) -> Plan[bool]:
    reply = yield Call(
        "delete",
        [keys.users, keys.tree, keys.record(user), *keys.events],
        [user, *recording.tail(now, None)],
        retry=False,  # a second try would answer "there was none"
    )
    return not outcome(reply, user).replayed


def replace_all(keys: Keys, new: dict[str, UserRecord]) -> Plan[None]:
    encoded = [(u, r.parent or "", encode_record(r)) for u, r in new.items()]
    while True:
        before: list[str] = yield from users(keys)
        dropped = [u for u in before if u not in new]
        args = [str(len(before)), *before, str(len(encoded))]
        for user, parent, fields in encoded:
            args += (user, parent, str(len(fields)), *fields)
        reply = yield Call(
            "replace",
            [keys.users, keys.tree, *(keys.record(u) for u in new), *map(keys.record, dropped)],
            args,
        )
        if reply[0] == b"ok":
            return
        if reply[1] != b"retry":
            raise refusal(reply)


def charge(
    keys: Keys,
    levels: Sequence[Level],
    model: str | None,
    amount: Decimal,
    now: float,
    limit_check: bool,
    key: str | None,
    thresholds: Sequence[Decimal],
    max_models: int,
    recording: Recording,
    tokens: dict[str, int] | None = None,
) -> Plan[Outcome]:
    user = levels[0][0]
    if model is not None:
        names.check_model(model)
    fingerprint = "" if key is None else request_fingerprint(user, model, amount)
    reply = yield Call(
        "charge",
        [
            keys.marker if key is None else keys.key(key),
            *_level_keys(keys, (n for n, _ in levels)),
            *keys.events,
        ],
        [
            fingerprint,
            str(KEY_RETENTION),
            encode_money(amount),
            model or "",
            repr(now),
            "1" if limit_check else "0",
            str(max_models),
            *encode_thresholds(thresholds),
            *_window_args(levels),
            *recording.tail(now, tokens, _stamp(levels[0][1].end)),
        ],
        retry=key is not None,
    )
    return outcome(reply, user, key)


class Pending(NamedTuple):
    """A script call and what is needed to read its reply."""

    call: Call
    user: str
    ident: str | None = None
    expected: HoldRecord | None = None

    def result(self, reply: list[Any]) -> Outcome:
        return outcome(reply, self.user, self.ident, self.expected)


def hold_call(
    keys: Keys,
    levels: Sequence[Level],
    hold_id: str,
    amount: Decimal,
    expires_at: float,
    now: float,
    model: str | None,
    limit_check: bool,
    recording: Recording,
) -> Pending:
    user = levels[0][0]
    keep_ms = int((max(expires_at - now, 0.0) + HOLD_RETENTION) * 1000) + 1
    held = encode_money(amount)
    expires_at, now = float(expires_at), float(now)
    call = Call(
        "hold",
        [keys.hold(hold_id), *_level_keys(keys, (n for n, _ in levels)), *keys.events],
        [
            hold_id,
            user,
            held,
            repr(expires_at),
            repr(now),
            model or "",
            "1" if limit_check else "0",
            str(keep_ms),
            *_window_args(levels),
            *recording.tail(now, None, _stamp(levels[0][1].end)),
        ],
    )
    new = HoldRecord(hold_id, user, Decimal(held), (), expires_at, now, model)
    return Pending(call, user, hold_id, new)


_KEEP_MS = str(int(HOLD_RETENTION * 1000))


def settle_call(
    keys: Keys,
    hold_id: str,
    amount: Decimal,
    model: str | None,
    thresholds: Sequence[Decimal],
    known: HoldRecord | None,
    levels: tuple[tuple[str, float | None], ...],
    max_models: int,
    recording: Recording,
    now: float | None = None,
    tokens: dict[str, int] | None = None,
) -> Pending:
    """The settle of a hold whose ``levels`` are known (``known``'s, when given)."""
    if model is not None:
        names.check_model(model)
    settled = encode_money(amount)
    expected = None
    if known is not None:
        remembered = [
            known.user,
            encode_money(known.amount),
            repr(known.expires_at),
            repr(known.created_at),
            known.model or "",
            known.state,
            _KEEP_MS,
        ]
        expected = HoldRecord(
            hold_id,
            known.user,
            known.amount,
            known.levels,
            known.expires_at,
            known.created_at,
            model or known.model,
            "settled",
            Decimal(settled),
        )
    else:
        remembered = [""]
    call = Call(
        "settle",
        [keys.hold(hold_id), *_level_keys(keys, (n for n, _ in levels)), *keys.events],
        [
            hold_id,
            settled,
            model or "",
            str(max_models),
            *encode_thresholds(thresholds),
            *level_args(levels),
            *remembered,
            *recording.tail(now, tokens),
        ],
    )
    return Pending(call, "", hold_id, expected)


def settle(
    keys: Keys,
    hold_id: str,
    amount: Decimal,
    model: str | None,
    thresholds: Sequence[Decimal],
    known: HoldRecord | None,
    levels: tuple[tuple[str, float | None], ...] | None,
    max_models: int,
    recording: Recording,
    now: float | None = None,
    tokens: dict[str, int] | None = None,
) -> Plan[Outcome]:
    """``levels``: the hold's levels if the caller knows them (else they are read first)."""
    if known is not None:
        levels = known.levels
    if levels is None:
        found = yield from read_hold(keys, hold_id)
        if found is None:
            raise UnknownHoldError(hold_id)
        levels = found.levels
    for _ in range(2):
        pending = settle_call(
            keys,
            hold_id,
            amount,
            model,
            thresholds,
            known,
            levels,
            max_models,
            recording,
            now,
            tokens,
        )
        try:
            return pending.result((yield pending.call))
        except Relevel as other:
            levels = decode_levels(other.levels)
            known = None  # Redis has the hold: what the caller knew is moot
    raise StoreError(f"the levels of hold {hold_id!r} kept changing")


def release(
    keys: Keys,
    hold_id: str,
    levels: tuple[tuple[str, float | None], ...] | None,
    recording: Recording,
    now: float | None,
) -> Plan[Outcome]:
    for _ in range(2):
        if levels is None:
            found = yield from read_hold(keys, hold_id)
            if found is None:
                raise UnknownHoldError(hold_id)
            levels = found.levels
        reply = yield Call(
            "release",
            [keys.hold(hold_id), *_level_keys(keys, (n for n, _ in levels)), *keys.events],
            [hold_id, *level_args(levels), *recording.tail(now, None)],
        )
        try:
            return outcome(reply, "", hold_id)
        except Relevel as other:
            levels = decode_levels(other.levels)
    raise StoreError(f"the levels of hold {hold_id!r} kept changing")


def reset(keys: Keys, user: str, recording: Recording, now: float | None) -> Plan[Outcome]:
    reply = yield Call(
        "reset", [keys.record(user), *keys.events], [user, *recording.tail(now, None)]
    )
    return outcome(reply, user)


def roll(
    keys: Keys, levels: Sequence[Level], recording: Recording, now: float | None
) -> Plan[Outcome]:
    user = levels[0][0]
    ends = ",".join(_stamp(w.end) or "-" for _, w in levels)
    reply = yield Call(
        "roll",
        [*(keys.record(n) for n, _ in levels), *keys.events],
        [*_window_args(levels), *recording.tail(now, None, ends)],
    )
    return outcome(reply, user)


#: History entries read per script call.
PAGE = 1_000


def history(
    keys: Keys,
    user: str | None,
    model: str | None,
    since: float | None,
    until: float | None,
    limit: int | None,
) -> Plan[list[HistoryEvent]]:
    """The events that match (the latest ``limit`` of them), oldest first: read newest first
    in pages until enough match."""
    low = "-" if since is None else _ms_id(since)
    high = "+" if until is None else _ms_id(until, end=True)
    found: list[HistoryEvent] = []
    while limit is None or len(found) < limit:
        reply = _ok((yield Call("history", [keys.events[0]], [low, high, str(PAGE), "1"])))
        page = reply[1]
        for _, fields in page:
            event = decode_event(fields)
            if (
                (user is None or event.user == user)
                and (model is None or event.model == model)
                and (since is None or event.time >= since)
                and (until is None or event.time < until)
            ):
                found.append(event)
        if len(page) < PAGE:
            break
        high = "(" + page[-1][0].decode()
    found.reverse()
    return latest(selected(found), limit)


def _ms_id(moment: float, end: bool = False) -> str:
    """The stream id bound (whole milliseconds) that takes in every event at ``moment``."""
    return str(max(int(moment * 1000) + (1 if end else 0), 0))


def decode_event(flat: Sequence[bytes]) -> HistoryEvent:
    """An event as a history stream entry holds it."""
    fields = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    def optional(name: str) -> str | None:
        return fields.get(name) or None

    def stamp(name: str) -> float | None:
        value = optional(name)
        return None if value is None else float(value)

    tokens = optional("tk")
    amount = optional("a")
    return HistoryEvent(
        float(fields["t"]),
        fields["k"],
        fields["u"],
        optional("m"),
        Decimal(fields.get("c") or "0"),
        None if amount is None else Decimal(amount),
        None if tokens is None else json.loads(tokens),
        optional("h"),
        stamp("ws"),
        stamp("we"),
    )


def open_call(keys: Keys, seen: bytes | None) -> Call:
    """The call that reads the project's marker (setting it for a new project); ``seen``: the
    marker this process saw before, if any."""
    return Call("open", [], [uuid.uuid4().hex, seen.decode() if seen else ""])


def marker(reply: list[bytes], seen: bytes | None) -> bytes:
    """The marker an ``open`` reply gives; LostData if it is not the one seen before."""
    if reply[0] != b"ok":
        raise refusal(reply)
    found = reply[1]
    if seen is not None and found != seen:
        raise refusal([b"err", b"lost"])
    return found
