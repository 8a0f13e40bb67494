"""BudgetManager: per-user budgets with LiteLLM's API, over any budget store."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal

from . import costs, names, periods, records
from .errors import InvalidInputError, UnknownUserError
from .money import to_float, to_money
from .records import UserRecord
from .stores import BudgetStore, JsonFileStore, adoptable_paths, default_path, store_from_url

Clock = Callable[[], float]
API_BASE_ENV = "BUDGET_MANAGER_API_BASE"
Duration = Literal["daily", "weekly", "monthly", "yearly"] | str | None


class BudgetManager:
    """Per-user budgets that may reset daily, weekly, monthly, yearly or on any span.

    ``client_type="local"`` keeps them in a JSON file (``path=`` chooses it; by default
    ``user_cost_<project>.json`` in the working folder). ``client_type="hosted"`` keeps them on
    a budget service at ``api_base`` (or ``$BUDGET_MANAGER_API_BASE``), sending ``headers``. ``store=`` takes any store URL or
    :class:`~budget_manager.stores.BudgetStore`. ``clock=`` replaces ``time.time`` (for tests).
    """

    def __init__(
        self,
        project_name: str,
        client_type: Literal["local", "hosted"] = "local",
        api_base: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        store: str | BudgetStore | None = None,
        clock: Clock | None = None,
        **options: Any,
    ) -> None:
        names.check(project_name, "project_name")
        if client_type not in ("local", "hosted"):
            raise InvalidInputError(f'client_type must be "local" or "hosted", got {client_type!r}')
        self.project_name = project_name
        self.client_type = client_type
        self.api_base = api_base
        self.headers = dict(headers) if headers else {"Content-Type": "application/json"}
        self._clock: Clock = clock or time.time
        self._store = self._open_store(path, store, options)

    def _open_store(
        self, path: str | os.PathLike[str] | None, store: str | BudgetStore | None, options: Any
    ) -> BudgetStore:
        if isinstance(store, BudgetStore):
            return store
        if store is not None:
            return store_from_url(store, self.project_name, **options)
        if self.client_type == "hosted":
            from .stores.hosted import HostedStore

            api_base = self.api_base or os.environ.get(API_BASE_ENV)
            if not api_base:
                raise InvalidInputError(
                    f'client_type="hosted" needs api_base= (or {API_BASE_ENV}): the URL of the '
                    "budget service, e.g. http://127.0.0.1:8000"
                )
            self.api_base = api_base
            return HostedStore(api_base, self.project_name, headers=self.headers, **options)
        if path is not None:
            return JsonFileStore(path, **options)
        # A LiteLLM user switching imports keeps the budgets LiteLLM kept in user_cost.json.
        options.setdefault("adopt", adoptable_paths(self.project_name))
        return JsonFileStore(default_path(self.project_name), **options)

    @property
    def store(self) -> BudgetStore:
        """Where this manager keeps its budgets."""
        return self._store

    # -- helpers -------------------------------------------------------------------------------
    def _record(self, user: str) -> UserRecord:
        record = self._store.get(_user(user))
        if record is None:
            raise UnknownUserError(user, self.project_name)
        return record

    # -- the documented API --------------------------------------------------------------------
    def create_budget(
        self,
        total_budget: float,
        user: str,
        duration: Duration = None,
        created_at: float | None = None,
    ) -> dict[str, Any]:
        """Create or replace ``user``'s budget of ``total_budget`` USD; returns the record.

        ``duration``: ``"daily"``, ``"weekly"``, ``"monthly"``, ``"yearly"``, a span such as
        ``"12h"`` or ``"2w"``, or None (never resets). ``created_at`` (epoch seconds, default now)
        is where periods are counted from.
        """
        user = _user(user)
        total = to_money(total_budget, "total_budget")
        period = periods.parse_duration(duration)
        start = self._clock() if created_at is None else _timestamp(created_at)
        end = None
        if period is not None:
            end = periods.period_bounds(period, start, start)[1]  # rejects dates out of range
        record = records.new_record(total, period, start, end)
        return self._store.put(user, record).to_public()

    def projected_cost(self, model: str, messages: Iterable[Mapping[str, Any]], user: str) -> float:
        """The user's spend after also paying for sending ``messages`` to ``model``."""
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
            raise InvalidInputError("messages must be a list of chat messages")
        prompt = costs.messages_cost(model, list(messages))
        return to_float(self._record(user).spent(self._clock()) + prompt)

    def get_total_budget(self, user: str) -> float:
        """The user's total budget in USD."""
        return to_float(self._record(user).total_budget)

    def update_cost(
        self,
        user: str,
        completion_obj: Any = None,
        model: str | None = None,
        input_text: str | None = None,
        output_text: str | None = None,
    ) -> dict[str, Any]:
        """Add the cost of one completion to the user's spend; returns ``{"user": record}``.

        Give the response (``completion_obj``) or the ``model`` with ``input_text`` (priced as one
        user message) and ``output_text`` (priced as completion tokens).
        """
        user = _user(user)
        model, cost = self._cost(completion_obj, model, input_text, output_text)
        return {"user": self._store.charge(user, model, cost, self._clock()).to_public()}

    def _cost(
        self, response: Any, model: str | None, input_text: str | None, output_text: str | None
    ) -> tuple[str, Decimal]:
        if model is not None and (input_text is not None or output_text is not None):
            return model, costs.text_cost(model, input_text or "", output_text or "")
        if response is not None:
            return costs.response_cost(response, model, now=self._clock())
        if model is not None:
            raise InvalidInputError("update_cost with model= also needs input_text and output_text")
        raise InvalidInputError(
            "update_cost needs either completion_obj=<response> or "
            "model=, input_text= and output_text="
        )

    def get_current_cost(self, user: str) -> float:
        """The user's spend in the current period (0 once a period has ended)."""
        return to_float(self._record(user).spent(self._clock()))

    def get_model_cost(self, user: str) -> dict[str, float]:
        """``{model: spend}`` in the current period."""
        return {m: to_float(c) for m, c in self._record(user).spent_by_model(self._clock()).items()}

    def is_valid_user(self, user: str) -> bool:
        """Whether ``user`` has a budget."""
        return names.problem(user) is None and self._store.get(user) is not None

    def get_users(self) -> list[str]:
        """Every user with a budget."""
        return self._store.users()

    def reset_cost(self, user: str) -> dict[str, Any]:
        """Zero the user's spend and per-model breakdown; returns ``{"user": record}``."""
        return {"user": self._store.reset(_user(user)).to_public()}

    def reset_on_duration(self, user: str) -> None:
        """Reset the user's spend if their period has ended (budgets without one never reset)."""
        self._record(user)
        self._store.roll(user, self._clock())

    def update_budget_all_users(self) -> None:
        """``reset_on_duration`` for every user."""
        self._store.roll_all(self._clock())

    def save_data(self) -> dict[str, Any]:
        """Persist everything in the store's canonical form; ``{"status": "success"}``."""
        return self._store.save()

    # -- beyond LiteLLM ------------------------------------------------------------------------
    def get_remaining_budget(self, user: str) -> float:
        """What the user may still spend in the current period."""
        return to_float(self._record(user).remaining(self._clock()))

    def get_reset_at(self, user: str) -> float | None:
        """When the user's current period ends (epoch seconds), or None if it never resets."""
        record = self._record(user)
        now = self._clock()
        if record.period is None:
            return None
        if record.is_due(now):
            return periods.period_bounds(record.period, record.anchor, now)[1]
        return record.period_end()

    @property
    def user_dict(self) -> dict[str, dict[str, Any]]:
        """A copy of every record, as LiteLLM's ``user_dict`` attribute holds them."""
        return {u: r.to_public() for u in self._store.users() if (r := self._store.get(u))}

    def close(self) -> None:
        """Persist and release the store."""
        self._store.close()

    def __enter__(self) -> BudgetManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BudgetManager({self.project_name!r}, store={self._store!r})"


def _user(user: object) -> str:
    return names.check(user, "user")


def _timestamp(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidInputError(f"created_at must be epoch seconds, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"created_at must be finite, got {value!r}")
    periods.to_datetime(number)
    return number
