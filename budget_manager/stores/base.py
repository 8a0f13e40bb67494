"""The interface every budget store implements, and the registry that picks one by URL scheme."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from ..errors import BudgetExceededError, InvalidInputError, StoreError, UnknownUserError
from ..money import to_float
from ..records import MAX_MODELS, UserRecord, charge, roll

S = TypeVar("S", bound="type[BudgetStore]")
_REGISTRY: dict[str, type[BudgetStore]] = {}


class BudgetStore(ABC):
    """Budgets of one project. Every change is atomic in the store itself, so any number of
    processes (and, for networked stores, machines) can share one store without losing updates.

    Records returned by the read methods are the store's own view: callers must not change them.
    """

    schemes: ClassVar[tuple[str, ...]] = ()
    #: Whether ``charge(..., idempotency_key=...)`` applies a keyed charge at most once.
    idempotent: ClassVar[bool] = False
    #: Distinct models a budget's breakdown may hold in one period (stores may take an option).
    max_models: int = MAX_MODELS

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, project: str, **options: Any) -> BudgetStore:
        """The store a URL of one of ``schemes`` names, for ``project``."""

    # -- reads ---------------------------------------------------------------------------------
    @abstractmethod
    def get(self, user: str) -> UserRecord | None:
        """The user's record as stored (periods not rolled), or None."""

    @abstractmethod
    def users(self) -> list[str]:
        """Users with a budget."""

    # -- atomic writes -------------------------------------------------------------------------
    @abstractmethod
    def put(self, user: str, record: UserRecord) -> UserRecord:
        """Create or replace the user's budget."""

    @abstractmethod
    def update(self, user: str, change: Callable[[UserRecord], None]) -> UserRecord:
        """Apply ``change`` to a copy of the user's record and store it, atomically.

        UnknownUserError if the user has no budget. If ``change`` raises, nothing is stored.
        """

    def charge(
        self,
        user: str,
        model: str | None,
        amount: Decimal,
        now: float,
        *,
        within_budget: bool = False,
        idempotency_key: str | None = None,
    ) -> UserRecord:
        """Add ``amount`` to the user's spend in the period containing ``now``.

        With ``within_budget``, refuse (BudgetExceededError, nothing changed) when the spend would
        then exceed the total budget: the atomic check-and-hold that reservations build on.
        Stores that are ``idempotent`` apply a charge carrying an ``idempotency_key`` at most once
        and answer a repeat with the record as the first one left it; others ignore the key.
        """
        change = charge_change(user, model, amount, now, within_budget, self.max_models)
        return self.update(user, change)

    # -- whole-project and removal operations ---------------------------------------------------
    def records(self) -> dict[str, UserRecord]:
        """Every user's record as stored."""
        return {u: r for u in self.users() if (r := self.get(u)) is not None}

    def replace_all(self, records: dict[str, UserRecord]) -> None:
        """Make ``records`` the project's whole user dict (atomically where the store can)."""
        for user in self.users():
            if user not in records:
                self.delete(user)
        for user, record in records.items():
            self.put(user, record)

    def delete(self, user: str) -> bool:
        """Remove the user's budget; whether there was one."""
        raise StoreError(f"{type(self).__name__} cannot delete budgets")

    def reset(self, user: str) -> UserRecord:
        """Zero the user's spend and per-model breakdown."""

        def apply(record: UserRecord) -> None:
            record.current_cost = Decimal(0)
            record.model_cost = None

        return self.update(user, apply)

    def roll(self, user: str, now: float) -> UserRecord:
        """Start the user's current period if the previous one has ended."""
        record = self.get(user)
        if record is None:
            raise UnknownUserError(user)
        if not record.is_due(now):
            return record

        def apply(record: UserRecord) -> None:
            roll(record, now)

        return self.update(user, apply)

    def roll_all(self, now: float) -> int:
        """``roll`` every user whose period has ended; the number of budgets reset."""
        count = 0
        for user in self.users():
            record = self.get(user)
            if record is not None and record.is_due(now):
                self.roll(user, now)
                count += 1
        return count

    def save(self) -> dict[str, Any]:
        """Make everything recorded so far durable in the store's canonical form."""
        return {"status": "success"}

    def close(self) -> None:
        """Release files and connections; the store is unusable afterwards."""


def charge_change(
    user: str,
    model: str | None,
    amount: Decimal,
    now: float,
    within_budget: bool,
    max_models: int = MAX_MODELS,
) -> Callable[[UserRecord], None]:
    """The change ``BudgetStore.charge`` applies to a user's record."""

    def apply(record: UserRecord) -> None:
        roll(record, now)
        if within_budget and record.current_cost + amount > record.total_budget:
            raise BudgetExceededError(
                to_float(record.current_cost + amount),
                to_float(record.total_budget),
                f"user {user!r} would spend {record.current_cost + amount} of a budget of "
                f"{record.total_budget}",
            )
        charge(record, model, amount, now, max_models)

    return apply


def register(cls: S) -> S:
    """Class decorator: make a store class selectable by its URL schemes."""
    for scheme in cls.schemes:
        _REGISTRY[scheme] = cls
    return cls


def store_from_url(url: str, project: str, **options: Any) -> BudgetStore:
    """The store a URL names: ``json:///path/budgets.json``, ``sqlite:///budgets.db``, ..."""
    scheme = urlsplit(url).scheme.lower()
    if not scheme or "://" not in url:
        raise InvalidInputError(f"store must be a URL such as json:///path/file.json, got {url!r}")
    _load_builtin_stores()
    cls = _REGISTRY.get(scheme) or _REGISTRY.get(scheme.split("+", 1)[0])
    if cls is None:
        known = ", ".join(sorted(_REGISTRY))
        raise InvalidInputError(f"no store for URL scheme {scheme!r}; known schemes: {known}")
    return cls.from_url(url, project, **options)


def _load_builtin_stores() -> None:
    # Importing a backend module registers it; backends with optional dependencies import those
    # only when used, so this stays cheap.
    from . import hosted, json_file, postgres, sqlite  # noqa: F401
