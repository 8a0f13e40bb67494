"""Request and response bodies of the service, validated by pydantic and shown in its OpenAPI
schema. Money is accepted as a JSON number or a decimal string and becomes an exact Decimal."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from .. import names
from ..errors import InvalidInputError
from ..events import MAX_FRACTION, alert_fractions
from ..money import to_money
from ..periods import DURATION_HELP, parse_duration

MAX_MONEY = Decimal(10) ** 15
MAX_NAME = names.MAX_NAME
MAX_USERS = 100_000
MAX_DEPTH = 32
# Up to MAX_MONEY (1e15) inclusive, as the numbers are.
_MONEY_TEXT = re.compile(r"^([0-9]{1,15}(\.[0-9]{1,30})?|1000000000000000(\.0{1,30})?)$")
DURATION_PATTERN = r"^(daily|weekly|monthly|yearly|[1-9][0-9]{0,1}(s|m|h|d|w|mo|y))$"
#: Latest accepted timestamp (2100-01-01), so every period boundary stays representable.
MAX_TIMESTAMP = 4_102_444_800


def _money(value: object) -> Decimal:
    if isinstance(value, str):
        if not _MONEY_TEXT.match(value):
            raise ValueError(f'must be a non-negative decimal such as "0.25", got {value!r}')
        try:
            amount = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
            raise ValueError(f"is not a number: {value!r}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        amount = to_money(value, "amount")
    else:
        raise ValueError(f"must be a number or a decimal string, got {type(value).__name__}")
    if amount > MAX_MONEY:
        raise ValueError(f"must be at most {MAX_MONEY}, got {value!r}")
    return amount


Money = Annotated[
    Decimal,
    PlainValidator(_money),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 1e15},
                {"type": "string", "pattern": _MONEY_TEXT.pattern},
            ]
        }
    ),
]


def _fraction(value: object) -> Decimal:
    if isinstance(value, str) and not _FRACTION_TEXT.match(value):
        raise ValueError(f'must be a fraction of the budget such as "0.8", got {value!r}')
    try:
        (fraction,) = alert_fractions([value], "alert fraction")
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None
    return fraction


# Above 0 and at most 100, in plain notation.
_FRACTION_TEXT = re.compile(
    r"^(0\.[0-9]{0,11}[1-9][0-9]{0,11}|[1-9][0-9]?(\.[0-9]{1,12})?|100(\.0{1,12})?)$"
)
#: A fraction of a budget to alert at: above 0, at most 100 (1 is the whole budget).
AlertFraction = Annotated[
    Decimal,
    PlainValidator(_fraction),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": float(MAX_FRACTION)},
                {"type": "string", "pattern": _FRACTION_TEXT.pattern},
            ]
        }
    ),
]
AlertAt = Annotated[
    list[AlertFraction] | None,
    Field(
        max_length=32,
        description="fractions of each budget whose crossing to mark and announce, besides "
        "those the service watches (--alert-at)",
    ),
]


def _duration(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be {DURATION_HELP}")
    parse_duration(value)  # UnknownDurationError is a ValueError: pydantic reports it
    return value


Duration = Annotated[
    str | None,
    PlainValidator(_duration),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, {"type": "null"}]}),
]


def _name_rule(limit: int) -> Any:
    """The validator of a name of at most ``limit`` characters (see :mod:`budget_manager.names`)."""

    def check(value: str) -> str:
        problem = names.problem(value, limit)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


def _name_schema(limit: int) -> Any:
    return WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": limit,
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
        }
    )


def _keys_named(schema: dict[str, Any]) -> None:
    """Show a dict keyed by names as such: every key follows the name rule (pydantic would list
    the rule's pattern as ``patternProperties``, which leaves other keys allowed)."""
    for variant in [schema, *schema.get("anyOf", [])]:
        patterns = variant.pop("patternProperties", None)
        if patterns:
            ((pattern, values),) = patterns.items()
            variant["additionalProperties"] = values
            variant.setdefault("propertyNames", {})["pattern"] = pattern


#: A user or project name; a model name; an idempotency key.
Name = Annotated[str, _name_rule(names.MAX_NAME), _name_schema(names.MAX_NAME)]
ModelName = Annotated[str, _name_rule(names.MAX_MODEL_NAME), _name_schema(names.MAX_MODEL_NAME)]
IdempotencyKey = Annotated[str, _name_rule(names.MAX_KEY), _name_schema(names.MAX_KEY)]
Timestamp = Annotated[float, Field(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False)]
Days = Annotated[float, Field(gt=0.0001, le=36_500, allow_inf_nan=False)]


# -- requests ----------------------------------------------------------------------------------
class GetBudgetRequest(BaseModel):
    """LiteLLM's load request."""

    model_config = ConfigDict(strict=True)

    project_name: Name


class RecordIn(BaseModel):
    """A user's record as LiteLLM keeps it (other keys are kept as given)."""

    model_config = ConfigDict(extra="allow", strict=True)

    total_budget: Money
    current_cost: Money = Decimal(0)
    model_cost: Annotated[dict[ModelName, Money] | None, Field(json_schema_extra=_keys_named)] = (
        None
    )
    duration: Days | None = Field(default=None, description="days per period, as LiteLLM stores it")
    created_at: Timestamp | None = None
    last_updated_at: Timestamp | None = None
    period: Duration = None


class SetBudgetRequest(BaseModel):
    """LiteLLM's save request: the project's whole user dict."""

    model_config = ConfigDict(strict=True)

    project_name: Name
    user_dict: Annotated[
        dict[Name, RecordIn], Field(max_length=MAX_USERS, json_schema_extra=_keys_named)
    ]


class BudgetIn(BaseModel):
    """Create or replace one user's budget."""

    model_config = ConfigDict(extra="forbid", strict=True)

    total_budget: Money
    duration: Duration = None
    created_at: Timestamp | None = None
    parent: Name | None = Field(default=None, description="the budget above this one")
    on_unknown_model: Literal["refuse", "allow"] | None = None
    on_store_error: Literal["closed", "open"] | None = None


#: The usage a call reported, as history events keep it.
TokenName = Literal["prompt", "completion", "cache_read", "cache_write", "reasoning"]
Tokens = Annotated[
    dict[TokenName, Annotated[int, Field(ge=0, le=10**12, strict=False)]],
    Field(description="the usage the call reported, kept in the history"),
]


class HoldIn(BaseModel):
    """Hold an amount of a user's budget (and its ancestors') for a while."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user: Name
    amount: Money
    ttl: float = Field(default=300.0, gt=0, le=7 * 86_400, allow_inf_nan=False)
    hold_id: Name | None = Field(default=None, description="makes taking the hold idempotent")
    model: ModelName | None = None


class LevelIn(BaseModel):
    """A budget a hold holds against, and the start of the period it was taken in."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user: Name
    start: Timestamp | None = None


class TakenHoldIn(BaseModel):
    """A hold as it was taken (its id is the path's)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user: Name
    amount: Money
    levels: Annotated[list[LevelIn], Field(min_length=1, max_length=4)]
    expires_at: Timestamp
    created_at: Timestamp
    model: ModelName | None = None


class SettleIn(BaseModel):
    """Record a hold's actual cost."""

    model_config = ConfigDict(extra="forbid", strict=True)

    cost: Money
    model: ModelName | None = None
    hold: TakenHoldIn | None = Field(
        default=None,
        description="the hold as taken, for a hold the service has forgotten (long expired)",
    )
    tokens: Tokens | None = None
    alert_at: AlertAt = None


class CostIn(BaseModel):
    """Add one cost to a user's spend."""

    model_config = ConfigDict(extra="forbid", strict=True)

    cost: Money
    model: ModelName | None = None
    idempotency_key: IdempotencyKey | None = None
    within_budget: bool = Field(
        default=False,
        description="refuse with 409 (nothing changed) if the spend would exceed the budget",
    )
    tokens: Tokens | None = None
    alert_at: AlertAt = None

    def options(self) -> dict[str, Any]:
        """The charge's options, as :meth:`~budget_manager.operations.Flows.charge` takes them."""
        return {
            "limit_check": self.within_budget,
            "key": self.idempotency_key,
            "tokens": self.tokens,
            "alert_at": self.alert_at,
        }


# -- responses ---------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    """Every error the service answers, whatever its status code."""

    status: Literal["error"] = "error"
    message: str
    field: str | None = None
    user: str | None = Field(default=None, description="the budget concerned, when one is")


class RecordOut(BaseModel):
    """A user's budget record with LiteLLM's keys (amounts exact in the JSON text)."""

    model_config = ConfigDict(extra="allow")

    total_budget: float
    current_cost: float
    model_cost: dict[str, float] = {}
    duration: float | None = None
    created_at: float | None = None
    last_updated_at: float | None = None
    period: str | None = None


class StatusOut(BaseModel):
    status: Literal["success"] = "success"


class BudgetDataOut(BaseModel):
    status: Literal["success"] = "success"
    data: dict[str, RecordOut]


class UserOut(BaseModel):
    status: Literal["success"] = "success"
    user: str
    data: RecordOut


class HoldRecordOut(BaseModel):
    """A hold (amounts exact, as decimal strings)."""

    hold_id: str
    user: str
    amount: str
    levels: list[list[Any]]
    expires_at: float
    created_at: float
    model: str | None = None
    state: Literal["open", "settled", "released"]
    settled: str | None = None


class HoldOut(BaseModel):
    """The answer to an operation on a hold: the hold and its user's record."""

    status: Literal["success"] = "success"
    user: str
    data: RecordOut | None = None
    hold: HoldRecordOut
    rolled: list[str] = []
    alerts: list[dict[str, Any]] = []
    replayed: bool = False


class HoldsOut(BaseModel):
    status: Literal["success"] = "success"
    holds: list[HoldRecordOut]
    held: str | None = None
    available: str | None = None


class EventOut(BaseModel):
    """One change, as the history keeps it (amounts written exactly)."""

    time: float
    kind: str
    user: str
    model: str | None = None
    cost: float
    amount: float | None = None
    tokens: dict[str, int] | None = None
    hold_id: str | None = None
    window_start: float | None = None
    window_end: float | None = None


class HistoryOut(BaseModel):
    status: Literal["success"] = "success"
    events: list[EventOut]


class ReportOut(BaseModel):
    status: Literal["success"] = "success"
    by: Literal["user", "model", "day"]
    spend: dict[str, float]


class RolledOut(BaseModel):
    status: Literal["success"] = "success"
    rolled: int


class UsersOut(BaseModel):
    status: Literal["success"] = "success"
    users: list[str]


class ProjectsOut(BaseModel):
    status: Literal["success"] = "success"
    projects: list[str]


class DeletedOut(BaseModel):
    status: Literal["success"] = "success"
    deleted: bool


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class CapabilitiesOut(BaseModel):
    atomic: bool
    idempotency: bool
    version: int
    operations: list[str]
    max_body_bytes: int


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a JSON value, counting no further than ``limit + 1``."""
    if limit < 0:
        return 1
    if isinstance(value, dict):
        return 1 + max((depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v, limit - 1) for v in value), default=0)
    return 0
