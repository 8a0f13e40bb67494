"""Stores that run the ledger's Python rules (:mod:`budget_manager.ledger`) inside an atomic step
of their own: a file lock (JSON), a database transaction (SQLite), a mutex (memory)."""

from __future__ import annotations

import time
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

    def put(self, user: str, record: UserRecord, now: float | None = None) -> UserRecord:
        outcome = self._apply(ledger.put, user, record, _now(now))
        assert outcome.record is not None
        return outcome.record

    def delete(self, user: str, now: float | None = None) -> bool:
        return not self._apply(ledger.delete, user, _now(now)).replayed

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
        tokens: dict[str, int] | None = None,
    ) -> Outcome:
        return self._apply(
            ledger.charge,
            levels,
            model,
            amount,
            now,
            limit_check,
            key,
            thresholds,
            self.max_models,
            tokens,
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
        now: float | None = None,
        tokens: dict[str, int] | None = None,
    ) -> Outcome:
        return self._apply(
            ledger.settle,
            hold_id,
            amount,
            model,
            thresholds,
            known,
            self.max_models,
            _now(now),
            tokens,
        )

    def release(self, hold_id: str, now: float | None = None) -> Outcome:
        return self._apply(ledger.release, hold_id, _now(now))

    def reset(self, user: str, now: float | None = None) -> Outcome:
        return self._apply(ledger.reset, user, _now(now))

    def roll(self, levels: Sequence[Level], now: float | None = None) -> Outcome:
        return self._apply(ledger.roll, levels, _now(now))


def _now(now: float | None) -> float:
    return time.time() if now is None else now


__all__ = ["LedgerState", "PythonLedgerStore"]
