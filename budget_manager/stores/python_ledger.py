"""Stores that run the ledger's Python rules (:mod:`budget_manager.ledger`) inside an atomic step
of their own: a file lock (JSON), a database transaction (SQLite), a mutex (memory)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from .. import ledger
from ..ledger import Changes, LedgerState, Level, Outcome
from ..records import HoldRecord, UserRecord
from .base import BudgetStore


class PythonLedgerStore(BudgetStore):
    """The ledger operations, each run by :meth:`_apply` in the store's atomic step."""

    @abstractmethod
    def _apply(
        self, operation: Callable[..., tuple[Outcome, Changes | None]], *args: Any, **kwargs: Any
    ) -> Outcome:
        """Run ``operation(state, *args, **kwargs)`` in one atomic step and persist the changes
        it returns (nothing if it raises)."""

    @abstractmethod
    def _replace(self, records: dict[str, UserRecord]) -> None:
        """Make ``records`` the whole user dict (hierarchy already checked)."""

    def put(self, user: str, record: UserRecord) -> UserRecord:
        outcome = self._apply(ledger.put, user, record)
        assert outcome.record is not None
        return outcome.record

    def delete(self, user: str) -> bool:
        return not self._apply(ledger.delete, user).replayed

    def replace_all(self, records: dict[str, UserRecord]) -> None:
        ledger.check_forest(records)
        self._replace(records)

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
        return self._apply(
            ledger.charge, levels, model, amount, now, limit_check, key, thresholds, self.max_models
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
        return self._apply(
            ledger.hold, levels, hold_id, amount, expires_at, now, model, limit_check
        )

    def settle(
        self,
        hold_id: str,
        amount: Decimal,
        model: str | None,
        thresholds: Sequence[Decimal] = (),
        known: HoldRecord | None = None,
    ) -> Outcome:
        return self._apply(
            ledger.settle, hold_id, amount, model, thresholds, known, self.max_models
        )

    def release(self, hold_id: str) -> Outcome:
        return self._apply(ledger.release, hold_id)

    def reset(self, user: str) -> Outcome:
        return self._apply(ledger.reset, user)

    def roll(self, levels: Sequence[Level]) -> Outcome:
        return self._apply(ledger.roll, levels)


__all__ = ["LedgerState", "PythonLedgerStore"]
