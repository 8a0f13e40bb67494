"""Exact money: amounts are ``Decimal`` inside the library and ``float`` at its edges."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from numbers import Real

from .errors import InvalidBudgetError

ZERO = Decimal(0)


def to_money(value: object, what: str = "amount", *, allow_negative: bool = False) -> Decimal:
    """Return ``value`` as an exact Decimal, or raise :class:`InvalidBudgetError` naming ``what``.

    Floats convert through their shortest repr, so ``0.0001725`` becomes ``Decimal("0.0001725")``
    rather than the binary fraction nearest to it.
    """
    if type(value) is Decimal and value.is_finite() and (allow_negative or not value < 0):
        return value  # the common case (amounts read from files), without the checks below
    if type(value) is int and value >= 0:
        return ZERO if value == 0 else Decimal(value)
    if isinstance(value, bool) or not isinstance(value, (Real, Decimal)):
        raise InvalidBudgetError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    else:
        number = float(value)
        if not math.isfinite(number):
            raise InvalidBudgetError(f"{what} must be finite, got {value!r}")
        amount = Decimal(repr(number))
    if not amount.is_finite():
        raise InvalidBudgetError(f"{what} must be finite, got {value!r}")
    if amount < 0 and not allow_negative:
        raise InvalidBudgetError(f"{what} must not be negative, got {value!r}")
    return amount


def parse_money(text: str, what: str = "amount") -> Decimal:
    """Parse a decimal string (as stored in files and databases) into an exact amount."""
    try:
        amount = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise InvalidBudgetError(f"{what} is not a number: {text!r}") from None
    return to_money(amount, what)


def to_text(amount: Decimal) -> str:
    """An amount as a plain decimal string, without exponent (``Decimal("1.5E-7")`` is
    ``"0.00000015"``): the form a budget service's decimal strings take."""
    return format(amount.copy_abs() if amount.is_zero() else amount, "f")


def to_float(amount: Decimal | float | int) -> float:
    """The float a caller sees for an exact amount."""
    return float(amount)


# Our own context, so a caller's decimal settings (precision, traps) never change the arithmetic.
MONEY_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)

#: The finest amount a store keeps (USD): every cost, hold and budget is rounded half-even to it
#: on its way into a store, so that every store (SQL, Redis, files) keeps the same sums exactly.
RESOLUTION = Decimal("1e-12")
_RESOLUTION_EXPONENT = -12


def rounded(amount: Decimal) -> Decimal:
    """``amount`` rounded half-even to :data:`RESOLUTION`."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= _RESOLUTION_EXPONENT:
        return amount
    return amount.quantize(RESOLUTION, rounding=ROUND_HALF_EVEN, context=MONEY_CONTEXT)


def add(a: Decimal, b: Decimal) -> Decimal:
    """Exact sum of two amounts."""
    return MONEY_CONTEXT.add(a, b)


def multiply(a: Decimal, b: Decimal | int) -> Decimal:
    """Exact product, e.g. a token count times a per-token price."""
    return MONEY_CONTEXT.multiply(a, b)
