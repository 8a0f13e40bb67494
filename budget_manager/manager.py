"""BudgetManager: per-user budgets with LiteLLM's API, over any budget store."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from . import costs
from .completion import send
from .hold import Hold
from .manager_flows import (
    Clock,
    ManagerFlows,
    MaxTokens,
    completion_limit,
)
from .operations import DEFAULT_TTL, Ledger, Operations, blocking, drive
from .response import ModelResponse
from .stores import BudgetStore, JsonFileStore, adoptable_paths, default_path, store_from_url
from .stores.hosted import HostedStore
from .stores.memory import MemoryStore
from .stream import CompletionStream


class BudgetManager(ManagerFlows):
    """Per-user budgets that may reset daily, weekly, monthly, yearly or on any span.

    ``client_type="local"`` keeps them in a JSON file (``path=`` chooses it; by default
    ``user_cost_<project>.json`` in the working folder). ``client_type="hosted"`` keeps them on
    a budget service at ``api_base`` (or ``$BUDGET_MANAGER_API_BASE``), sending ``headers``.
    ``store=`` takes any store URL or :class:`~budget_manager.stores.BudgetStore`. ``clock=``
    replaces ``time.time`` (for tests). ``on_unknown_model`` and ``on_store_error`` are the
    policies of budgets that set none of their own.
    """

    _ops: Ledger
    _store: BudgetStore | HostedStore

    def __init__(
        self,
        project_name: str,
        client_type: Literal["local", "hosted"] = "local",
        api_base: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        store: str | BudgetStore | HostedStore | None = None,
        clock: Clock | None = None,
        on_unknown_model: Literal["refuse", "allow"] = "refuse",
        on_store_error: Literal["closed", "open"] = "closed",
        outbox_dir: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        self._configure(
            project_name, client_type, api_base, headers, clock, on_unknown_model, on_store_error
        )
        self._store = self._open_store(path, store, options)
        if isinstance(self._store, HostedStore):
            self._ops = self._store
            where = self._store.api_base
        else:
            self._ops = Operations(self._store, self._clock)
            where = repr(self._store)
        self._keep_costs(
            where, not isinstance(self._store, JsonFileStore | MemoryStore), outbox_dir
        )
        drive(self._ops, self._deliver())

    def _open_store(
        self,
        path: str | os.PathLike[str] | None,
        store: str | BudgetStore | HostedStore | None,
        options: Any,
    ) -> BudgetStore | HostedStore:
        if isinstance(store, (BudgetStore, HostedStore)):
            return store
        api_base = self._service_url(store)
        if api_base is not None:
            return HostedStore(
                api_base, self.project_name, headers=self.headers, clock=self._clock, **options
            )
        if store is not None:
            opened: BudgetStore = store_from_url(store, self.project_name, **options)
            return opened
        if path is not None:
            return JsonFileStore(path, **options)
        # A LiteLLM user switching imports keeps the budgets LiteLLM kept in user_cost.json.
        options.setdefault("adopt", adoptable_paths(self.project_name))
        return JsonFileStore(default_path(self.project_name), **options)

    @property
    def store(self) -> BudgetStore | HostedStore:
        """Where this manager keeps its budgets."""
        return self._store

    # -- the documented API (the flows, in manager_flows.py) ---------------------------------------
    create_budget = blocking(ManagerFlows._create_budget)
    projected_cost = blocking(ManagerFlows._projected_cost)
    get_total_budget = blocking(ManagerFlows._get_total_budget)
    update_cost = blocking(ManagerFlows._update_cost)
    get_current_cost = blocking(ManagerFlows._get_current_cost)
    get_model_cost = blocking(ManagerFlows._get_model_cost)
    is_valid_user = blocking(ManagerFlows._is_valid_user)
    get_users = blocking(ManagerFlows._get_users)
    reset_cost = blocking(ManagerFlows._reset_cost)
    reset_on_duration = blocking(ManagerFlows._reset_on_duration)
    update_budget_all_users = blocking(ManagerFlows._update_budget_all_users)
    save_data = blocking(ManagerFlows._save_data)
    pending_costs = blocking(ManagerFlows._pending_costs)

    # -- holds ---------------------------------------------------------------------------------
    def reserve(
        self,
        user: str,
        *,
        amount: float | None = None,
        model: str | None = None,
        messages: Iterable[Mapping[str, Any]] | None = None,
        max_tokens: MaxTokens = None,
        ttl: float = DEFAULT_TTL,
        hold_id: str | None = None,
    ) -> Hold:
        taken = drive(
            self._ops,
            self._reserve(
                user,
                amount=amount,
                model=model,
                messages=messages,
                max_tokens=max_tokens,
                ttl=ttl,
                hold_id=hold_id,
            ),
        )
        return Hold(self, taken)

    reserve.__doc__ = ManagerFlows._reserve.__doc__

    def completion(
        self,
        *,
        user: str,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: MaxTokens = None,
        ttl: float = DEFAULT_TTL,
        **kwargs: Any,
    ) -> ModelResponse | CompletionStream:
        """:func:`budget_manager.completion` within the user's budget: the call's worst case is
        held first (BudgetExceededError, and nothing sent, when it does not fit), and the hold is
        settled with what the response reports (a stream: when it ends or is closed), or
        released if the call fails. ``max_tokens="fit"`` sends the largest ``max_tokens`` the
        budget can still pay for. ``max_completion_tokens=`` is honoured like ``max_tokens``."""
        limit_key, max_tokens = completion_limit(kwargs, max_tokens)
        hold = self.reserve(user, model=model, messages=messages, max_tokens=max_tokens, ttl=ttl)
        if hold.max_tokens is not None:
            kwargs[limit_key] = hold.max_tokens
        try:
            return send(
                model,
                messages,
                kwargs,
                on_cost=lambda priced: _ignore(_settle(hold, priced)),
                priced=costs.has_price(model),
            )
        except BaseException:
            if not hold.done:
                hold.release()
            raise

    get_holds = blocking(ManagerFlows._get_holds)

    # -- beyond LiteLLM ------------------------------------------------------------------------
    get_remaining_budget = blocking(ManagerFlows._get_remaining_budget)
    get_reset_at = blocking(ManagerFlows._get_reset_at)
    delete_budget = blocking(ManagerFlows._delete_budget)
    history = blocking(ManagerFlows._history)
    spend_report = blocking(ManagerFlows._spend_report)

    # -- operating budgets ---------------------------------------------------------------------
    add_cost = blocking(ManagerFlows._add_cost)
    budget_status = blocking(ManagerFlows._budget_status)
    budget_statuses = blocking(ManagerFlows._budget_statuses)
    open_holds = blocking(ManagerFlows._open_holds)
    release_hold = blocking(ManagerFlows._release_by_id)
    reset_expired = blocking(ManagerFlows._reset_expired)
    import_users = blocking(ManagerFlows._import_users)
    export_users = blocking(ManagerFlows._export_users)

    @property
    def user_dict(self) -> dict[str, dict[str, Any]]:
        """A copy of every record, as LiteLLM's ``user_dict`` attribute holds them."""
        return drive(self._ops, self._user_dict())

    def close(self) -> None:
        """Persist and release the store."""
        self._ops.close()

    def __enter__(self) -> BudgetManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settle(hold: Hold, priced: costs.Priced) -> float:
    """Settle ``hold`` with what the call cost and the tokens it used."""
    return hold.settle(cost=priced.cost, tokens=priced.usage.counts())


def _ignore(_: object) -> None:
    """Drop a value (a callback must return None)."""
