"""The store interface: a small set of atomic ledger operations, the registry that picks a store
by URL scheme, and the one place where a backend's own exceptions become the library's.

A store keeps the budgets and holds of one project. Every change is one atomic step inside the
store (a lock, a transaction, a Lua script), so any number of threads, processes and machines can
share it without losing an update or overspending. Periods are not computed here: callers pass
each budget's :class:`~budget_manager.windows.Window` (see :mod:`budget_manager.operations`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from .. import ledger
from ..errors import BudgetManagerError, InvalidInputError, StoreError, StoreUnavailableError
from ..history import HistoryEvent
from ..ledger import Level, Outcome
from ..records import MAX_MODELS, HoldRecord, UserRecord

S = TypeVar("S", bound="type[BudgetStore]")
F = TypeVar("F", bound=Callable[..., Any])
_REGISTRY: dict[str, type[BudgetStore]] = {}

#: The methods whose backend exceptions are wrapped (see :meth:`BudgetStore.backend_errors`).
OPERATIONS = (
    "get",
    "users",
    "records",
    "chain",
    "holds",
    "put",
    "delete",
    "replace_all",
    "charge",
    "hold",
    "settle",
    "release",
    "reset",
    "roll",
    "save",
)


class BudgetStore(ABC):
    """Budgets and holds of one project, changed only by atomic ledger operations.

    Records returned by the read methods are the store's own: callers must not change them.
    """

    schemes: ClassVar[tuple[str, ...]] = ()
    #: Distinct models a budget's breakdown may hold in one period (stores take ``max_models=``).
    max_models: int = MAX_MODELS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        wrap_backend_errors(cls)

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, project: str, **options: Any) -> BudgetStore:
        """The store a URL of one of ``schemes`` names, for ``project``."""

    @classmethod
    def backend_errors(
        cls,
    ) -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
        """The backend's exceptions that mean it cannot be reached (raised as
        StoreUnavailableError) and that mean it failed (raised as StoreError)."""
        return (), ()

    # -- reads ---------------------------------------------------------------------------------
    @abstractmethod
    def get(self, user: str) -> UserRecord | None:
        """The user's record as stored (periods not rolled), or None."""

    @abstractmethod
    def users(self) -> list[str]:
        """Users with a budget."""

    def records(self) -> dict[str, UserRecord]:
        """Every user's record as stored."""
        return {u: r for u in self.users() if (r := self.get(u)) is not None}

    def chain(self, user: str) -> list[UserRecord]:
        """The user's record and each ancestor's, the user's first; UnknownUserError if none."""
        return ledger.chain(self.get, user)

    @abstractmethod
    def holds(self, user: str | None = None) -> list[HoldRecord]:
        """Holds that may still be open: those against ``user``'s budget (as the user's or an
        ancestor's), or every one of the project."""

    @abstractmethod
    def history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HistoryEvent]:
        """The events kept (within the retention), filtered, oldest first; with ``limit``, the
        latest ``limit`` of them. ``until`` is excluded."""

    # -- atomic operations (see budget_manager.ledger for the rules) ----------------------------
    # Each also keeps the change's history event(s), in the same atomic step; ``now`` (default:
    # the time) is the event's time, ``tokens`` the usage the call reported.
    @abstractmethod
    def put(self, user: str, record: UserRecord, now: float | None = None) -> UserRecord:
        """Create or replace the user's budget (its parent must exist; no cycles; at most
        :data:`~budget_manager.ledger.MAX_LEVELS` levels)."""

    @abstractmethod
    def delete(self, user: str, now: float | None = None) -> bool:
        """Remove the user's budget (refused while others name it as parent); whether it was."""

    @abstractmethod
    def replace_all(self, records: dict[str, UserRecord]) -> None:
        """Make ``records`` the project's whole user dict, atomically."""

    @abstractmethod
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
        """Add ``amount`` to every level's spend; with ``limit_check``, only if it fits."""

    @abstractmethod
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
        """Hold ``amount`` against every level until ``expires_at``."""

    @abstractmethod
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
        """Record a hold's actual cost in the periods it was taken in, and free it."""

    @abstractmethod
    def release(self, hold_id: str, now: float | None = None) -> Outcome:
        """Free a hold, recording nothing."""

    @abstractmethod
    def reset(self, user: str, now: float | None = None) -> Outcome:
        """Zero the user's spend and per-model breakdown."""

    @abstractmethod
    def roll(self, levels: Sequence[Level], now: float | None = None) -> Outcome:
        """Start each level's window if it is later than its current period."""

    # -- lifetime ------------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        """Make everything recorded so far durable in the store's canonical form."""
        return {"status": "success"}

    def close(self) -> None:
        """Release files and connections; the store is unusable afterwards."""


def wrap_backend_errors(cls: type) -> None:
    """Make the operations of a store class (sync or asyncio) raise its backend's exceptions as
    the library's: the one place they are translated. A class that declares no
    ``backend_errors`` of its own is left as it is (no frame added to its calls)."""
    if cls.backend_errors.__func__ is BudgetStore.backend_errors.__func__:  # type: ignore[attr-defined]
        return
    for name in OPERATIONS:
        method = getattr(cls, name, None)
        if method is not None and not getattr(method, "_wrapped", False):
            setattr(cls, name, _wrap_errors(method))


def translate(store: Any, exc: Exception) -> Exception | None:
    """The library's error for a backend's exception raised by ``store``, or None."""
    if isinstance(exc, (BudgetManagerError, ledger.ChainChanged)):
        return None
    unavailable, failures = type(store).backend_errors()
    if unavailable and isinstance(exc, unavailable):
        return StoreUnavailableError(f"{store!r} is unavailable: {_describe(exc)}")
    if failures and isinstance(exc, failures):
        return StoreError(f"{store!r} failed: {_describe(exc)}")
    return None


def _wrap_errors(method: F) -> F:
    """``method`` raising the backend's exceptions as the library's."""
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def awaited(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await method(self, *args, **kwargs)
            except Exception as exc:
                error = translate(self, exc)
                if error is None:
                    raise
                raise error from exc

        awaited._wrapped = True  # type: ignore[attr-defined]
        return awaited  # type: ignore[return-value]

    @functools.wraps(method)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            error = translate(self, exc)
            if error is None:
                raise
            raise error from exc

    wrapped._wrapped = True  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def register(cls: S) -> S:
    """Class decorator: make a store class selectable by its URL schemes."""
    for scheme in cls.schemes:
        _REGISTRY[scheme] = cls
    return cls


def store_from_url(url: str, project: str, **options: Any) -> Any:
    """The store a URL names: ``json:///path/budgets.json``, ``sqlite:///budgets.db``,
    ``postgresql://...``, ``redis://...``, ``http(s)://...`` (a budget service)."""
    scheme = urlsplit(url).scheme.lower()
    if not scheme or "://" not in url:
        raise InvalidInputError(f"store must be a URL such as json:///path/file.json, got {url!r}")
    base = scheme.split("+", 1)[0]
    for name in (scheme, base):
        if name not in _REGISTRY and name in BUILTIN_SCHEMES:
            # Importing a backend's module registers it; only the one asked for is imported.
            importlib.import_module(BUILTIN_SCHEMES[name], __package__)
    cls = _REGISTRY.get(scheme) or _REGISTRY.get(base)
    if cls is None:
        known = ", ".join(sorted({*_REGISTRY, *BUILTIN_SCHEMES}))
        raise InvalidInputError(f"no store for URL scheme {scheme!r}; known schemes: {known}")
    return cls.from_url(url, project, **options)


#: The modules of the stores this package ships, by URL scheme.
BUILTIN_SCHEMES = {
    "json": ".json_file",
    "file": ".json_file",
    "memory": ".memory",
    "sqlite": ".sqlite",
    "sqlite3": ".sqlite",
    "postgresql": ".postgres",
    "postgres": ".postgres",
    "redis": ".redis",
    "rediss": ".redis",
    "http": ".hosted",
    "https": ".hosted",
}
