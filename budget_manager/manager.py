"""BudgetManager: per-user budgets with LiteLLM's API, over any budget store."""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from . import costs, names, periods, records
from .completion import send
from .costs.worst_case import WorstCase, worst_case
from .deferred import DeferredCosts
from .errors import (
    BudgetExceededError,
    InvalidInputError,
    StoreUnavailableError,
    UnknownModelError,
    UnknownUserError,
)
from .events import Listener
from .hold import Hold
from .money import ZERO, to_float, to_money
from .operations import DEFAULT_TTL, RETRIES, Ledger, Operations
from .records import STORE_ERROR_POLICIES, UNKNOWN_MODEL_POLICIES, HoldRecord, UserRecord
from .response import ModelResponse
from .stores import BudgetStore, JsonFileStore, adoptable_paths, default_path, store_from_url
from .stores.hosted import HostedStore, ServiceAuthError
from .stores.memory import MemoryStore
from .stream import CompletionStream
from .windows import window_of

Clock = Callable[[], float]
logger = logging.getLogger("budget_manager")
API_BASE_ENV = "BUDGET_MANAGER_API_BASE"
Duration = Literal["daily", "weekly", "monthly", "yearly"] | str | None


class BudgetManager:
    """Per-user budgets that may reset daily, weekly, monthly, yearly or on any span.

    ``client_type="local"`` keeps them in a JSON file (``path=`` chooses it; by default
    ``user_cost_<project>.json`` in the working folder). ``client_type="hosted"`` keeps them on
    a budget service at ``api_base`` (or ``$BUDGET_MANAGER_API_BASE``), sending ``headers``.
    ``store=`` takes any store URL or :class:`~budget_manager.stores.BudgetStore`. ``clock=``
    replaces ``time.time`` (for tests). ``on_unknown_model`` and ``on_store_error`` are the
    policies of budgets that set none of their own.
    """

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
        names.check(project_name, "project_name")
        self.on_unknown_model = _policy(on_unknown_model, "on_unknown_model")
        self.on_store_error = _policy(on_store_error, "on_store_error")
        if client_type not in ("local", "hosted"):
            raise InvalidInputError(f'client_type must be "local" or "hosted", got {client_type!r}')
        self.project_name = project_name
        self.client_type = client_type
        self.api_base = api_base
        self.headers = dict(headers) if headers else {"Content-Type": "application/json"}
        self._clock: Clock = clock or time.time
        self._store = self._open_store(path, store, options)
        if isinstance(self._store, HostedStore):
            self._ops: Ledger = self._store
            where = self._store.api_base
        else:
            self._ops = Operations(self._store, self._clock)
            where = repr(self._store)
        #: charges carry idempotency keys where an answer can be lost on the way back
        self._keyed = not isinstance(self._store, (JsonFileStore, MemoryStore))
        self._deferred = DeferredCosts(where, project_name, outbox_dir)
        self._known: dict[str, UserRecord] = {}  # the last record seen of each user
        self._deliver()

    def _open_store(
        self,
        path: str | os.PathLike[str] | None,
        store: str | BudgetStore | HostedStore | None,
        options: Any,
    ) -> BudgetStore | HostedStore:
        if isinstance(store, (BudgetStore, HostedStore)):
            return store
        if store is not None and not store.lower().startswith(("http://", "https://")):
            opened: BudgetStore = store_from_url(store, self.project_name, **options)
            return opened
        if store is not None or self.client_type == "hosted":
            api_base = store or self.api_base or os.environ.get(API_BASE_ENV)
            if not api_base:
                raise InvalidInputError(
                    f'client_type="hosted" needs api_base= (or {API_BASE_ENV}): the URL of the '
                    "budget service, e.g. http://127.0.0.1:8000"
                )
            self.api_base = api_base
            return HostedStore(
                api_base, self.project_name, headers=self.headers, clock=self._clock, **options
            )
        if path is not None:
            return JsonFileStore(path, **options)
        # A LiteLLM user switching imports keeps the budgets LiteLLM kept in user_cost.json.
        options.setdefault("adopt", adoptable_paths(self.project_name))
        return JsonFileStore(default_path(self.project_name), **options)

    @property
    def store(self) -> BudgetStore | HostedStore:
        """Where this manager keeps its budgets."""
        return self._store

    # -- helpers -------------------------------------------------------------------------------
    def _record(self, user: str) -> UserRecord:
        """The user's record, with the costs kept during an outage (not yet in the store)."""
        record = self._ops.get(_user(user))
        if record is None:
            raise UnknownUserError(user, self.project_name)
        self._known[user] = record
        if self._deferred.waiting:
            return self._deferred.estimate(user, record)
        return record

    def _deliver(self) -> None:
        """Deliver costs kept while the store was unreachable (nothing to do, mostly)."""
        if self._deferred.waiting:
            self._deferred.deliver(self._ops)

    def _unreachable_policy(self, user: str) -> str:
        known = self._known.get(user)
        policy = known.on_store_error if known is not None else None
        return policy or self.on_store_error

    def _kept(
        self, user: str, model: str | None, cost: Decimal, error: StoreUnavailableError
    ) -> dict[str, Any]:
        """The answer to a cost kept for later: the user's record as it will be, if this manager
        has seen the user; else (or when the store refuses this client's credentials) an error
        that names the cost and says it was kept."""
        of_model = f" (model {names.shown(model)})" if model is not None else ""
        what = f"the cost of {cost} for user {names.shown(user)}{of_model}"
        kept = f"it was kept in {self._deferred.path} and will be delivered when the store is back"
        known = self._known.get(user)
        if isinstance(error, ServiceAuthError):
            raise ServiceAuthError(f"{what} was not delivered: {error}; {kept}") from error
        if known is None:
            raise StoreUnavailableError(f"{what} was not delivered: {error}; {kept}") from error
        logger.warning("%s was not delivered: %s; %s", what, error, kept)
        return {"user": self._deferred.estimate(user, known).to_public()}

    # -- the documented API --------------------------------------------------------------------
    def create_budget(
        self,
        total_budget: float,
        user: str,
        duration: Duration = None,
        created_at: float | None = None,
        *,
        parent: str | None = None,
        on_unknown_model: Literal["refuse", "allow"] | None = None,
        on_store_error: Literal["closed", "open"] | None = None,
    ) -> dict[str, Any]:
        """Create or replace ``user``'s budget of ``total_budget`` USD; returns the record.

        ``duration``: ``"daily"``, ``"weekly"``, ``"monthly"``, ``"yearly"``, a span such as
        ``"12h"`` or ``"2w"``, or None (never resets). ``created_at`` (epoch seconds, default now)
        is where periods are counted from. ``parent`` names the budget (a team, an organization)
        every cost of this user also counts against, in that budget's own period; up to four
        levels. ``on_unknown_model`` / ``on_store_error`` set this budget's policies.
        """
        user = _user(user)
        total = to_money(total_budget, "total_budget")
        period = periods.parse_duration(duration)
        start = self._clock() if created_at is None else _timestamp(created_at)
        end = None
        if period is not None:
            end = periods.period_bounds(period, start, start)[1]  # rejects dates out of range
        record = records.new_record(total, period, start, end)
        if parent is not None:
            record.parent = names.check(parent, "parent")
        if on_unknown_model is not None:
            record.on_unknown_model = _policy(on_unknown_model, "on_unknown_model")
        if on_store_error is not None:
            record.on_store_error = _policy(on_store_error, "on_store_error")
        stored = self._ops.put(user, record)
        self._known[user] = stored
        return stored.to_public()

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
        key = uuid.uuid4().hex if self._keyed else None
        self._deliver()
        try:
            record = self._ops.charge(user, model, cost, key=key).record
        except StoreUnavailableError as exc:
            self._deferred.keep_charge(user, model, cost, key, self._clock())
            return self._kept(user, model, cost, exc)
        assert record is not None
        self._known[user] = record
        return {"user": record.to_public()}

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
        """The user's settled spend in the current period (0 once a period has ended)."""
        return to_float(self._record(user).spent(self._clock()))

    def get_model_cost(self, user: str) -> dict[str, float]:
        """``{model: spend}`` in the current period."""
        return {m: to_float(c) for m, c in self._record(user).spent_by_model(self._clock()).items()}

    def is_valid_user(self, user: str) -> bool:
        """Whether ``user`` has a budget."""
        return names.problem(user) is None and self._ops.get(user) is not None

    def get_users(self) -> list[str]:
        """Every user with a budget."""
        return self._ops.users()

    def reset_cost(self, user: str) -> dict[str, Any]:
        """Zero the user's spend and per-model breakdown; returns ``{"user": record}``."""
        return {"user": self._ops.reset(_user(user)).to_public()}

    def reset_on_duration(self, user: str) -> None:
        """Reset the user's spend if their period has ended (budgets without one never reset)."""
        self._ops.roll(_user(user))

    def update_budget_all_users(self) -> None:
        """``reset_on_duration`` for every user."""
        self._ops.roll_all()

    def save_data(self) -> dict[str, Any]:
        """Persist everything in the store's canonical form; ``{"status": "success"}``, or, while
        costs kept during an outage wait undelivered, ``{"status": "pending", "pending": n, ...}``
        (with ``dead_letter`` and ``dead_letter_path`` when the store refused some for good)."""
        self._deliver()
        try:
            answer = self._ops.save()
        except StoreUnavailableError as exc:
            answer = {"status": "error", "message": str(exc)}
        return self._deferred.report(answer)

    def pending_costs(self) -> int:
        """Costs recorded while the store could not be reached, kept and not yet delivered
        (delivering them first, if the store is back)."""
        self._deliver()
        return self._deferred.pending()

    # -- holds ---------------------------------------------------------------------------------
    def reserve(
        self,
        user: str,
        *,
        amount: float | None = None,
        model: str | None = None,
        messages: Iterable[Mapping[str, Any]] | None = None,
        max_tokens: int | Literal["fit"] | None = None,
        ttl: float = DEFAULT_TTL,
        hold_id: str | None = None,
    ) -> Hold:
        """Hold money on the user's budget (and every ancestor's) before a call, atomically:
        settled spend plus open holds plus this one must fit, or BudgetExceededError and nothing
        is held.

        The amount is ``amount``, else the call's worst case: the cost of ``messages`` for
        ``model`` plus ``max_tokens`` (default: the model's output limit) times its highest
        output price. ``max_tokens="fit"`` holds what the budget can still buy and sets
        ``hold.max_tokens`` to the largest ``max_tokens`` that fits. The hold lapses after
        ``ttl`` seconds unless settled or released; ``hold_id`` makes taking it idempotent.

        When the store cannot be reached, the budget's ``on_store_error`` policy decides:
        ``"closed"`` raises StoreUnavailableError; ``"open"`` hands out a hold the store does
        not know of (with a warning), whose settle is charged when the store is back.
        """
        user = _user(user)
        self._deliver()
        try:
            return self._reserve(user, amount, model, messages, max_tokens, ttl, hold_id)
        except StoreUnavailableError as exc:
            if self._unreachable_policy(user) == "closed":
                raise
            logger.warning("%s; the call goes ahead unchecked (on_store_error='open')", exc)
            now = self._clock()
            detached = HoldRecord(
                hold_id=hold_id or uuid.uuid4().hex,
                user=user,
                amount=to_money(amount, "amount") if amount is not None else ZERO,
                levels=((user, None),),
                expires_at=now + ttl,
                created_at=now,
                model=model,
            )
            return Hold(self, detached, None if max_tokens == "fit" else max_tokens, detached=True)

    def _reserve(
        self,
        user: str,
        amount: float | None,
        model: str | None,
        messages: Iterable[Mapping[str, Any]] | None,
        max_tokens: int | Literal["fit"] | None,
        ttl: float,
        hold_id: str | None,
    ) -> Hold:
        if amount is not None:
            record = self._ops.hold(
                user, to_money(amount, "amount"), ttl=ttl, hold_id=hold_id, model=model
            ).hold
            assert record is not None
            return Hold(self, record, None if max_tokens == "fit" else max_tokens)
        if model is None:
            raise InvalidInputError("reserve needs amount= or model= (to price the worst case)")
        names.check_model(model)
        if not self._priced(user, model):
            record = self._ops.hold(user, ZERO, ttl=ttl, hold_id=hold_id, model=model).hold
            assert record is not None
            return Hold(self, record, None if max_tokens == "fit" else max_tokens)
        worst = worst_case(model, messages)
        if max_tokens == "fit":
            return self._reserve_fit(user, worst, ttl, hold_id)
        if max_tokens is None:
            max_tokens = worst.max_output_tokens
            if max_tokens is None:
                raise InvalidInputError(
                    f"the output limit of {model!r} is unknown; pass max_tokens= to reserve"
                )
        max_tokens = _count(max_tokens, "max_tokens")
        held = self._ops.hold(
            user, worst.cost(max_tokens), ttl=ttl, hold_id=hold_id, model=model
        ).hold
        assert held is not None
        return Hold(self, held, max_tokens)

    def _reserve_fit(self, user: str, worst: WorstCase, ttl: float, hold_id: str | None) -> Hold:
        for _ in range(RETRIES):
            available = self._ops.available(user)
            fits = worst.fit(available)
            if fits < 1:
                raise BudgetExceededError(
                    to_float(worst.cost(1)),
                    to_float(available),
                    f"{user!r} has {available} left, less than the prompt and one output token "
                    f"of {worst.model!r} cost ({worst.cost(1)})",
                    user=user,
                )
            try:
                held = self._ops.hold(
                    user, worst.cost(fits), ttl=ttl, hold_id=hold_id, model=worst.model
                ).hold
            except BudgetExceededError:
                continue  # another hold took some of it meanwhile: measure again
            assert held is not None
            return Hold(self, held, fits)
        raise BudgetExceededError(0.0, 0.0, f"the budget of {user!r} kept shrinking", user=user)

    def _priced(self, user: str, model: str) -> bool:
        """Whether ``model`` has a price; UnknownModelError unless the budget allows it."""
        if costs.has_price(model):
            return True
        policy = self._record(user).on_unknown_model or self.on_unknown_model
        if policy == "refuse":
            raise UnknownModelError(model)
        logger.warning("%s has no price: held and charged as 0 for %r", model, user)
        return False

    def _settle(
        self, hold: Hold, response: Any, cost: float | Decimal | None, model: str | None
    ) -> float:
        if cost is not None:
            amount = to_money(cost, "cost")
        elif response is not None:
            model, amount = costs.response_cost(response, model or hold.model, now=self._clock())
        else:
            amount = hold.record.amount
        self._deliver()
        try:
            if hold.detached:  # taken while the store was unreachable: a plain keyed charge
                self._ops.charge(hold.user, model or hold.model, amount, key=hold.id)
                return to_float(amount)
            outcome = self._ops.settle(hold.id, amount, model, known=hold.record)
        except StoreUnavailableError as exc:
            if hold.detached:
                self._deferred.keep_charge(
                    hold.user, model or hold.model, amount, hold.id, self._clock()
                )
            else:
                self._deferred.keep_settle(hold.record, amount, model, self._clock())
            logger.warning("%s; the cost was kept in %s to deliver later", exc, self._deferred.path)
            return to_float(amount)
        assert outcome.hold is not None and outcome.hold.settled is not None
        hold.record = outcome.hold
        return to_float(outcome.hold.settled)

    def _release(self, hold: Hold) -> None:
        if hold.detached:
            return
        outcome = self._ops.release(hold.id)
        if outcome.hold is not None:
            hold.record = outcome.hold

    def completion(
        self,
        *,
        user: str,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int | Literal["fit"] | None = None,
        ttl: float = DEFAULT_TTL,
        **kwargs: Any,
    ) -> ModelResponse | CompletionStream:
        """:func:`budget_manager.completion` within the user's budget: the call's worst case is
        held first (BudgetExceededError, and nothing sent, when it does not fit), and the hold is
        settled with what the response reports (a stream: when it ends or is closed), or
        released if the call fails. ``max_tokens="fit"`` sends the largest ``max_tokens`` the
        budget can still pay for. ``max_completion_tokens=`` is honoured like ``max_tokens``."""
        limit_key = "max_completion_tokens" if "max_completion_tokens" in kwargs else "max_tokens"
        if limit_key == "max_completion_tokens":
            max_tokens = kwargs.pop(limit_key)
        hold = self.reserve(user, model=model, messages=messages, max_tokens=max_tokens, ttl=ttl)
        if hold.max_tokens is not None:
            kwargs[limit_key] = hold.max_tokens
        try:
            return send(
                model,
                messages,
                kwargs,
                on_cost=lambda amount: _ignore(hold.settle(cost=amount)),
                priced=costs.has_price(model),
            )
        except BaseException:
            if not hold.done:
                hold.release()
            raise

    def get_holds(self, user: str) -> list[dict[str, Any]]:
        """The open holds on the user's budget (its own, and for a parent, those of the users
        below it)."""
        return [h.to_public() for h in self._ops.holds(_user(user))]

    def _held(self, user: str) -> Decimal:
        total = ZERO
        for hold in self._ops.holds(user):
            total += hold.amount
        return total

    # -- beyond LiteLLM ------------------------------------------------------------------------
    def get_remaining_budget(self, user: str) -> float:
        """What the user may still spend in the current period: the budget minus settled spend
        minus open holds."""
        record = self._record(user)
        return to_float(record.remaining(self._clock()) - self._held(user))

    def get_reset_at(self, user: str) -> float | None:
        """When the user's current period ends (epoch seconds), or None if it never resets."""
        return window_of(self._record(user), self._clock()).end

    def delete_budget(self, user: str) -> bool:
        """Remove the user's budget (refused while other budgets name it as their parent);
        whether there was one."""
        return self._ops.delete(_user(user))

    def on_event(self, listener: Listener) -> None:
        """Call ``listener(event)`` after every change this manager makes."""
        self._ops.subscribe(listener)

    @property
    def user_dict(self) -> dict[str, dict[str, Any]]:
        """A copy of every record, as LiteLLM's ``user_dict`` attribute holds them."""
        return {u: r.to_public() for u, r in self._ops.records().items()}

    def close(self) -> None:
        """Persist and release the store."""
        self._ops.close()

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


def _policy(value: object, what: str) -> str:
    allowed = UNKNOWN_MODEL_POLICIES if what == "on_unknown_model" else STORE_ERROR_POLICIES
    if value not in allowed:
        raise InvalidInputError(f"{what} must be one of {allowed}, got {value!r}")
    return str(value)


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{what} must be a whole number of tokens >= 1, got {value!r}")
    return value


def _ignore(_: object) -> None:
    """Drop a value (a callback must return None)."""
