"""A hold on a budget, as ``BudgetManager.reserve`` hands it out."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .records import HoldRecord

if TYPE_CHECKING:
    from .manager import BudgetManager

logger = logging.getLogger("budget_manager")


class Hold:
    """Money set aside on a user's budget (and its ancestors') until the call's cost is known.

    ``settle(...)`` records the actual cost and frees the rest; ``release()`` frees it all and
    records nothing. As a context manager, an exception inside the block releases it, and leaving
    the block without settling records the held amount (spend is never under-counted).
    """

    def __init__(
        self,
        manager: BudgetManager,
        record: HoldRecord,
        max_tokens: int | None = None,
        *,
        detached: bool = False,
    ) -> None:
        self._manager = manager
        self.record = record
        #: taken while the store was unreachable (``on_store_error="open"``): it holds nothing,
        #: and its settle is a charge
        self.detached = detached
        #: the ``max_tokens`` to send: the one given, or with ``max_tokens="fit"`` the largest
        #: whose worst case the budget could still hold
        self.max_tokens = max_tokens
        #: the cost a settle recorded (None until settled)
        self.cost: float | None = None
        self.released = False

    @property
    def id(self) -> str:
        return self.record.hold_id

    @property
    def user(self) -> str:
        return self.record.user

    @property
    def model(self) -> str | None:
        return self.record.model

    @property
    def amount(self) -> float:
        """The amount held, in USD."""
        return float(self.record.amount)

    @property
    def expires_at(self) -> float:
        """When the hold stops holding (epoch seconds); it can still be settled after."""
        return self.record.expires_at

    def settle(
        self,
        completion_obj: Any = None,
        *,
        cost: float | Decimal | None = None,
        model: str | None = None,
    ) -> float:
        """Record the call's actual cost (``cost``, or priced from ``completion_obj``; the held
        amount when given neither) and free the rest. Settling again changes nothing and returns
        the same cost."""
        self.cost = self._manager._settle(self, completion_obj, cost, model)
        return self.cost

    def release(self) -> None:
        """Free the hold without recording a cost."""
        self._manager._release(self)
        self.released = True

    @property
    def done(self) -> bool:
        """Whether it was settled or released."""
        return self.cost is not None or self.released

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if self.done:
            return
        if kind is not None:
            self.release()
        else:
            self.settle()

    def __repr__(self) -> str:
        state = "settled" if self.cost is not None else "released" if self.released else "open"
        return f"Hold({self.id!r}, user={self.user!r}, amount={self.amount}, {state})"
