"""Holds as ``reserve`` hands them out: :class:`Hold` from ``BudgetManager.reserve``,
:class:`AsyncHold` (with :class:`Reservation`) from ``AsyncBudgetManager.reserve``."""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .operations import adrive, drive
from .records import HoldRecord

if TYPE_CHECKING:
    from .async_manager import AsyncBudgetManager
    from .manager import BudgetManager
    from .manager_flows import ManagerFlows, Taken


class HoldBase:
    """What a hold is: the money set aside, for whom, until when, and how it ended."""

    def __init__(self, manager: ManagerFlows, taken: Taken) -> None:
        self._manager = manager
        self.record: HoldRecord = taken.record
        #: taken while the store was unreachable (``on_store_error="open"``): it holds nothing,
        #: and its settle is a charge
        self.detached = taken.detached
        #: the ``max_tokens`` to send: the one given, or with ``max_tokens="fit"`` the largest
        #: whose worst case the budget could still hold
        self.max_tokens = taken.max_tokens
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

    @property
    def done(self) -> bool:
        """Whether it was settled or released."""
        return self.cost is not None or self.released

    def __repr__(self) -> str:
        state = "settled" if self.cost is not None else "released" if self.released else "open"
        return (
            f"{type(self).__name__}({self.id!r}, user={self.user!r}, amount={self.amount}, {state})"
        )


class Hold(HoldBase):
    """Money set aside on a user's budget (and its ancestors') until the call's cost is known.

    ``settle(...)`` records the actual cost and frees the rest; ``release()`` frees it all and
    records nothing. As a context manager, an exception inside the block releases it, and leaving
    the block without settling records the held amount (spend is never under-counted).
    """

    _manager: BudgetManager

    def settle(
        self,
        completion_obj: Any = None,
        *,
        cost: float | Decimal | None = None,
        model: str | None = None,
        tokens: Mapping[str, int] | None = None,
    ) -> float:
        """Record the call's actual cost (``cost``, or priced from ``completion_obj``; the held
        amount when given neither) and free the rest. Settling again changes nothing and returns
        the same cost. ``tokens`` (such as ``{"prompt": 812, "completion": 96}``) go in the
        history with a ``cost`` (a ``completion_obj``'s usage goes there by itself)."""
        manager = self._manager
        self.cost = drive(
            manager._ops, manager._settle_hold(self, completion_obj, cost, model, tokens)
        )
        return self.cost

    def release(self) -> None:
        """Free the hold without recording a cost."""
        drive(self._manager._ops, self._manager._release_hold(self))
        self.released = True

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if self.done:
            return
        if kind is not None:
            self.release()
        else:
            self.settle()


class AsyncHold(HoldBase):
    """:class:`Hold` for asyncio: ``await hold.settle(...)``, ``await hold.release()``, and
    ``async with`` (an exception inside the block releases it; leaving it unsettled records the
    held amount)."""

    _manager: AsyncBudgetManager

    async def settle(
        self,
        completion_obj: Any = None,
        *,
        cost: float | Decimal | None = None,
        model: str | None = None,
        tokens: Mapping[str, int] | None = None,
    ) -> float:
        """As :meth:`Hold.settle`."""
        manager = self._manager
        self.cost = await adrive(
            manager._ops, manager._settle_hold(self, completion_obj, cost, model, tokens)
        )
        return self.cost

    async def release(self) -> None:
        """Free the hold without recording a cost."""
        await adrive(self._manager._ops, self._manager._release_hold(self))
        self.released = True

    async def __aenter__(self) -> AsyncHold:
        return self

    async def __aexit__(self, kind: object, error: object, trace: object) -> None:
        if self.done:
            return
        if kind is not None:
            await self.release()
        else:
            await self.settle()


class Reservation(Awaitable[AsyncHold]):
    """What ``AsyncBudgetManager.reserve`` returns: ``hold = await bm.reserve(...)``, or
    ``async with bm.reserve(...) as hold:`` (settled or released as the block ends)."""

    def __init__(self, taking: Coroutine[Any, Any, AsyncHold]) -> None:
        self._taking = taking
        self._hold: AsyncHold | None = None

    def __await__(self) -> Generator[Any, None, AsyncHold]:
        return self._taking.__await__()

    async def __aenter__(self) -> AsyncHold:
        self._hold = await self._taking
        return self._hold

    async def __aexit__(self, kind: object, error: object, trace: object) -> None:
        if self._hold is not None:
            await self._hold.__aexit__(kind, error, trace)
