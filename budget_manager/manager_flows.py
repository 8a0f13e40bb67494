"""What a budget manager does, written once for :class:`~budget_manager.BudgetManager` and
:class:`~budget_manager.AsyncBudgetManager`.

Each method of the documented API is a flow here (a generator yielding the ledger calls it needs,
as :mod:`budget_manager.operations` does for stores);
:func:`~budget_manager.operations.blocking` turns a flow into the synchronous method,
:func:`~budget_manager.operations.awaiting` into the coroutine. Everything but the calls themselves
(validation, pricing, worst cases, policies, costs kept during an outage) is in the flows.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar, overload

from . import costs, history, money, names, periods, records, status
from .costs.worst_case import WorstCase, worst_case
from .deferred import DeferredCosts
from .errors import (
    BudgetExceededError,
    CorruptStoreError,
    HierarchyError,
    InvalidInputError,
    StoreUnavailableError,
    UnknownModelError,
    UnknownUserError,
)
from .events import DEFAULT_FRACTIONS, AlertCallback, Event, Listener, alert_fractions
from .history import HistoryEvent, ReportBy
from .ledger import check_forest
from .money import ZERO, to_float, to_money
from .operations import DEFAULT_TTL, RETRIES, Call, Flow, Progress
from .records import STORE_ERROR_POLICIES, UNKNOWN_MODEL_POLICIES, HoldRecord, UserRecord
from .status import BudgetStatus
from .stores.hosted import ServiceAuthError
from .windows import window_of

if TYPE_CHECKING:
    from .hold import HoldBase

Clock = Callable[[], float]
logger = logging.getLogger("budget_manager")
API_BASE_ENV = "BUDGET_MANAGER_API_BASE"
Duration = Literal["daily", "weekly", "monthly", "yearly"] | str | None
MaxTokens = int | Literal["fit"] | None
C = TypeVar("C", bound=AlertCallback)


class Taken(NamedTuple):
    """A hold as a reserve flow hands it out: the record, the ``max_tokens`` to send, and
    whether the store never saw it (taken while it was unreachable)."""

    record: HoldRecord
    max_tokens: int | None
    detached: bool = False


class ManagerFlows:
    """The state and the flows shared by the sync and the asyncio manager."""

    _ops: Any  # the ledger: Operations / HostedStore, or their asyncio twins
    _asynchronous = False  # whether the methods are coroutines

    def _configure(
        self,
        project_name: str,
        client_type: str,
        api_base: str | None,
        headers: dict[str, str] | None,
        clock: Clock | None,
        on_unknown_model: str,
        on_store_error: str,
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
        self._known: dict[str, UserRecord] = {}  # the last record seen of each user

    def _service_url(self, store: object) -> str | None:
        """The budget service to use (``store=`` an http(s) URL, or ``client_type="hosted"``),
        or None for a store."""
        if isinstance(store, str) and store.lower().startswith(("http://", "https://")):
            self.api_base = store
        elif store is not None or self.client_type != "hosted":
            return None
        api_base = self.api_base or os.environ.get(API_BASE_ENV)
        if not api_base:
            raise InvalidInputError(
                f'client_type="hosted" needs api_base= (or {API_BASE_ENV}): the URL of the '
                "budget service, e.g. http://127.0.0.1:8000"
            )
        self.api_base = api_base
        return api_base

    def _keep_costs(self, where: str, keyed: bool, outbox_dir: Any) -> None:
        #: charges carry idempotency keys where an answer can be lost on the way back
        self._keyed = keyed
        self._deferred = DeferredCosts(where, self.project_name, outbox_dir)

    # -- helpers -------------------------------------------------------------------------------
    def _record_of(self, user: str) -> Flow[UserRecord]:
        """The user's record, with the costs kept during an outage (not yet in the store)."""
        record: UserRecord | None = yield Call("get", (_user(user),))
        if record is None:
            raise UnknownUserError(user, self.project_name)
        self._known[user] = record
        if self._deferred.waiting:
            return self._deferred.estimate(user, record)
        return record

    def _deliver(self) -> Flow[int]:
        """Deliver costs kept while the store was unreachable; how many are still kept."""
        if not self._deferred.waiting:
            return 0
        left: int = yield from self._deferred.deliver()
        return left

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
    def _create_budget(
        self,
        total_budget: float | Decimal,
        user: str,
        duration: Duration = None,
        created_at: float | None = None,
        *,
        parent: str | None = None,
        on_unknown_model: Literal["refuse", "allow"] | None = None,
        on_store_error: Literal["closed", "open"] | None = None,
    ) -> Flow[dict[str, Any]]:
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
        stored: UserRecord = yield Call("put", (user, record))
        self._known[user] = stored
        return stored.to_public()

    def _projected_cost(
        self, model: str, messages: Iterable[Mapping[str, Any]], user: str
    ) -> Flow[float]:
        """The user's spend after also paying for sending ``messages`` to ``model``."""
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
            raise InvalidInputError("messages must be a list of chat messages")
        prompt = costs.messages_cost(model, list(messages))
        record = yield from self._record_of(user)
        return to_float(record.spent(self._clock()) + prompt)

    def _get_total_budget(self, user: str) -> Flow[float]:
        """The user's total budget in USD."""
        record = yield from self._record_of(user)
        return to_float(record.total_budget)

    def _update_cost(
        self,
        user: str,
        completion_obj: Any = None,
        model: str | None = None,
        input_text: str | None = None,
        output_text: str | None = None,
    ) -> Flow[dict[str, Any]]:
        """Add the cost of one completion to the user's spend; returns ``{"user": record}``.

        Give the response (``completion_obj``) or the ``model`` with ``input_text`` (priced as one
        user message) and ``output_text`` (priced as completion tokens).
        """
        user = _user(user)
        model, cost, usage = self._cost(completion_obj, model, input_text, output_text)
        charged: dict[str, Any] = yield from self._charge(user, model, cost, usage.counts() or None)
        return charged

    def _charge(
        self,
        user: str,
        model: str | None,
        cost: Decimal,
        tokens: dict[str, int] | None = None,
        key: str | None = None,
    ) -> Flow[dict[str, Any]]:
        """Add an already priced ``cost`` to the user's spend; ``key`` (default: a new one)
        makes the charge idempotent on stores that can lose an answer on the way back."""
        key = (key or uuid.uuid4().hex) if self._keyed else None
        if self._deferred.waiting:
            yield from self._deliver()
        try:
            outcome = yield Call("charge", (user, model, cost), {"key": key, "tokens": tokens})
        except StoreUnavailableError as exc:
            self._deferred.keep_charge(user, model, cost, key, self._clock())
            return self._kept(user, model, cost, exc)
        record = outcome.record
        assert record is not None
        self._known[user] = record
        return {"user": record.to_public()}

    def _cost(
        self, response: Any, model: str | None, input_text: str | None, output_text: str | None
    ) -> costs.Priced:
        if model is not None and (input_text is not None or output_text is not None):
            return costs.price_text(model, input_text or "", output_text or "")
        if response is not None:
            return costs.price_response(response, model, now=self._clock())
        if model is not None:
            raise InvalidInputError("update_cost with model= also needs input_text and output_text")
        raise InvalidInputError(
            "update_cost needs either completion_obj=<response> or "
            "model=, input_text= and output_text="
        )

    def _get_current_cost(self, user: str) -> Flow[float]:
        """The user's settled spend in the current period (0 once a period has ended)."""
        record = yield from self._record_of(user)
        return to_float(record.spent(self._clock()))

    def _get_model_cost(self, user: str) -> Flow[dict[str, float]]:
        """``{model: spend}`` in the current period."""
        record = yield from self._record_of(user)
        return {m: to_float(c) for m, c in record.spent_by_model(self._clock()).items()}

    def _is_valid_user(self, user: str) -> Flow[bool]:
        """Whether ``user`` has a budget."""
        if names.problem(user) is not None:
            return False
        return (yield Call("get", (user,))) is not None

    def _get_users(self) -> Flow[list[str]]:
        """Every user with a budget."""
        found: list[str] = yield Call("users")
        return found

    def _reset_cost(self, user: str) -> Flow[dict[str, Any]]:
        """Zero the user's spend and per-model breakdown; returns ``{"user": record}``."""
        record: UserRecord = yield Call("reset", (_user(user),))
        return {"user": record.to_public()}

    def _reset_on_duration(self, user: str) -> Flow[None]:
        """Reset the user's spend if their period has ended (budgets without one never reset)."""
        yield Call("roll", (_user(user),))

    def _update_budget_all_users(self) -> Flow[None]:
        """``reset_on_duration`` for every user."""
        yield from self._reset_expired()

    def _save_data(self) -> Flow[dict[str, Any]]:
        """Persist everything in the store's canonical form; ``{"status": "success"}``, or, while
        costs kept during an outage wait undelivered, ``{"status": "pending", "pending": n, ...}``
        (with ``dead_letter`` and ``dead_letter_path`` when the store refused some for good)."""
        yield from self._deliver()
        try:
            answer: dict[str, Any] = yield Call("save")
        except StoreUnavailableError as exc:
            answer = {"status": "error", "message": str(exc)}
        return self._deferred.report(answer)

    def _pending_costs(self) -> Flow[int]:
        """Costs recorded while the store could not be reached, kept and not yet delivered
        (delivering them first, if the store is back)."""
        yield from self._deliver()
        return self._deferred.pending()

    # -- holds ---------------------------------------------------------------------------------
    def _reserve(
        self,
        user: str,
        *,
        amount: float | None = None,
        model: str | None = None,
        messages: Iterable[Mapping[str, Any]] | None = None,
        max_tokens: MaxTokens = None,
        ttl: float = DEFAULT_TTL,
        hold_id: str | None = None,
    ) -> Flow[Taken]:
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
        yield from self._deliver()
        try:
            taken: Taken = yield from self._hold_for(
                user, amount, model, messages, max_tokens, ttl, hold_id
            )
            return taken
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
            return Taken(detached, None if max_tokens == "fit" else max_tokens, detached=True)

    def _hold_for(
        self,
        user: str,
        amount: float | None,
        model: str | None,
        messages: Iterable[Mapping[str, Any]] | None,
        max_tokens: MaxTokens,
        ttl: float,
        hold_id: str | None,
    ) -> Flow[Taken]:
        given = None if max_tokens == "fit" else max_tokens
        if amount is not None:
            held = yield from self._hold(user, to_money(amount, "amount"), ttl, hold_id, model)
            return Taken(held, given)
        if model is None:
            raise InvalidInputError("reserve needs amount= or model= (to price the worst case)")
        names.check_model(model)
        priced = yield from self._priced(user, model)
        if not priced:
            held = yield from self._hold(user, ZERO, ttl, hold_id, model)
            return Taken(held, given)
        worst = worst_case(model, messages)
        if max_tokens == "fit":
            taken: Taken = yield from self._hold_fit(user, worst, ttl, hold_id)
            return taken
        if max_tokens is None:
            max_tokens = worst.max_output_tokens
            if max_tokens is None:
                raise InvalidInputError(
                    f"the output limit of {model!r} is unknown; pass max_tokens= to reserve"
                )
        max_tokens = _count(max_tokens, "max_tokens")
        held = yield from self._hold(user, worst.cost(max_tokens), ttl, hold_id, model)
        return Taken(held, max_tokens)

    def _hold(
        self, user: str, amount: Decimal, ttl: float, hold_id: str | None, model: str | None
    ) -> Flow[HoldRecord]:
        outcome = yield Call(
            "hold", (user, amount), {"ttl": ttl, "hold_id": hold_id, "model": model}
        )
        assert outcome.hold is not None
        held: HoldRecord = outcome.hold
        return held

    def _hold_fit(
        self, user: str, worst: WorstCase, ttl: float, hold_id: str | None
    ) -> Flow[Taken]:
        for _ in range(RETRIES):
            available: Decimal = yield Call("available", (user,))
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
                held = yield from self._hold(user, worst.cost(fits), ttl, hold_id, worst.model)
            except BudgetExceededError:
                continue  # another hold took some of it meanwhile: measure again
            return Taken(held, fits)
        raise BudgetExceededError(0.0, 0.0, f"the budget of {user!r} kept shrinking", user=user)

    def _priced(self, user: str, model: str) -> Flow[bool]:
        """Whether ``model`` has a price; UnknownModelError unless the budget allows it."""
        if costs.has_price(model):
            return True
        record = yield from self._record_of(user)
        policy = record.on_unknown_model or self.on_unknown_model
        if policy == "refuse":
            raise UnknownModelError(model)
        logger.warning("%s has no price: held and charged as 0 for %r", model, user)
        return False

    def _settle_hold(
        self,
        hold: HoldBase,
        response: Any,
        cost: float | Decimal | None,
        model: str | None,
        counted: Mapping[str, int] | None = None,
    ) -> Flow[float]:
        """Record a hold's actual cost (see :meth:`Hold.settle`); the cost recorded."""
        tokens = _tokens(counted)
        if cost is not None:
            amount = to_money(cost, "cost")
        elif response is not None:
            priced = costs.price_response(response, model or hold.model, now=self._clock())
            model, amount, tokens = priced.model, priced.cost, priced.usage.counts() or None
        else:
            amount = hold.record.amount
        yield from self._deliver()
        try:
            if hold.detached:  # taken while the store was unreachable: a plain keyed charge
                yield Call("charge", (hold.user, model or hold.model, amount), {"key": hold.id})
                return to_float(amount)
            outcome = yield Call(
                "settle", (hold.id, amount, model), {"known": hold.record, "tokens": tokens}
            )
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

    def _release_hold(self, hold: HoldBase) -> Flow[None]:
        """Free a hold without recording a cost."""
        if hold.detached:
            return
        outcome = yield Call("release", (hold.id,))
        if outcome.hold is not None:
            hold.record = outcome.hold

    def _get_holds(self, user: str) -> Flow[list[dict[str, Any]]]:
        """The open holds on the user's budget (its own, and for a parent, those of the users
        below it)."""
        found: list[HoldRecord] = yield Call("holds", (_user(user),))
        return [h.to_public() for h in found]

    # -- beyond LiteLLM ------------------------------------------------------------------------
    def _get_remaining_budget(self, user: str) -> Flow[float]:
        """What the user may still spend in the current period: the budget minus settled spend
        minus open holds."""
        record = yield from self._record_of(user)
        found: list[HoldRecord] = yield Call("holds", (user,))
        held = ZERO
        for hold in found:
            held += hold.amount
        return to_float(record.remaining(self._clock()) - held)

    def _get_reset_at(self, user: str) -> Flow[float | None]:
        """When the user's current period ends (epoch seconds), or None if it never resets."""
        record = yield from self._record_of(user)
        return window_of(record, self._clock()).end

    def _delete_budget(self, user: str) -> Flow[bool]:
        """Remove the user's budget (refused while other budgets name it as their parent);
        whether there was one."""
        existed: bool = yield Call("delete", (_user(user),))
        return existed

    def _history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: datetime | float | str | None = None,
        until: datetime | float | str | None = None,
        limit: int | None = None,
    ) -> Flow[list[HistoryEvent]]:
        """The history: one :class:`~budget_manager.history.HistoryEvent` per change (charges,
        holds, settles, releases, resets, rolls, creates, deletes) that matches the filters,
        oldest first; with ``limit``, the latest ``limit`` of them. ``since`` (included) and
        ``until`` (excluded) take a ``datetime``, epoch seconds, or a span back from now such as
        ``"7d"``."""
        now = self._clock()
        bounds = (history.when(since, now, "since"), history.when(until, now, "until"))
        found: list[HistoryEvent] = yield Call("history", (user, model, *bounds, limit))
        return found

    def _spend_report(
        self, since: datetime | float | str | None = None, by: ReportBy = "user"
    ) -> Flow[dict[str, float]]:
        """``{key: spend}`` from the history since ``since`` (default: all it keeps): by
        ``"user"``, ``"model"`` or ``"day"`` (UTC, ``YYYY-MM-DD``)."""
        history.report((), by)  # a bad ``by`` is refused before the store is asked
        events = yield from self._history(since=since)
        return history.report(events, by)

    def _user_dict(self) -> Flow[dict[str, dict[str, Any]]]:
        """A copy of every record, as LiteLLM's ``user_dict`` attribute holds them."""
        found: dict[str, UserRecord] = yield Call("records")
        return {u: r.to_public() for u, r in found.items()}

    # -- operating budgets (what the command line needs) -----------------------------------------
    def _add_cost(
        self, user: str, cost: float | Decimal | str, model: str | None = None
    ) -> Flow[dict[str, Any]]:
        """Add a known cost (USD; a decimal string is taken exactly) to the user's spend, under
        ``model`` in the per-model breakdown; returns ``{"user": record}`` as ``update_cost``
        does."""
        user = _user(user)
        amount = (
            money.parse_money(cost, "cost") if isinstance(cost, str) else to_money(cost, "cost")
        )
        if model is not None:
            names.check_model(model)
        answer: dict[str, Any] = yield from self._charge(user, model, amount, None)
        return answer

    def _budget_status(self, user: str) -> Flow[BudgetStatus]:
        """Where the user's budget stands now: a :class:`~budget_manager.status.BudgetStatus`
        (parent, budget, spend, open holds, remaining, period, next reset, per-model spend)."""
        record = yield from self._record_of(user)
        found: list[HoldRecord] = yield Call("holds", (user,))
        return status.status_of(user, record, found, self._clock())

    def _budget_statuses(self) -> Flow[dict[str, BudgetStatus]]:
        """``{user: BudgetStatus}`` for every budget, read in two store calls (the records and
        the open holds) however many users there are."""
        found: dict[str, UserRecord] = yield Call("records")
        open_holds: list[HoldRecord] = yield Call("holds", (None,))
        return status.statuses(found, open_holds, self._clock())

    def _open_holds(self, user: str | None = None) -> Flow[list[HoldRecord]]:
        """The open holds (on ``user``'s budget, or on every budget) as
        :class:`~budget_manager.records.HoldRecord` objects, amounts exact."""
        found: list[HoldRecord] = yield Call("holds", (None if user is None else _user(user),))
        return found

    def _release_by_id(self, hold_id: str) -> Flow[HoldRecord]:
        """Free the hold ``hold_id`` without recording a cost (UnknownHoldError if there is
        none); returns the hold. One already settled or released is left as it was: its
        ``state`` says which."""
        names.check(hold_id, "hold_id")
        outcome = yield Call("release", (hold_id,))
        assert outcome.hold is not None
        released: HoldRecord = outcome.hold
        return released

    def _reset_expired(self, progress: Progress | None = None) -> Flow[int]:
        """Start a new period for every budget whose period has ended; how many did.
        ``progress(done, total)`` is told as they are reset."""
        rolled: int = yield Call("roll_all", (progress,))
        return rolled

    def _import_users(
        self,
        user_dict: Mapping[str, Any],
        *,
        replace: bool = False,
        progress: Progress | None = None,
    ) -> Flow[int]:
        """Write the budgets of a user dict (LiteLLM's ``user_cost.json`` format, or this
        library's export), spend included; how many. Every record is checked before anything
        is written: one bad record raises InvalidInputError naming it, and nothing changes.
        Budgets already stored and not in ``user_dict`` are kept, unless ``replace=True``
        makes ``user_dict`` the whole user dict (in one atomic step). ``progress(done, total)``
        is called as they are written."""
        parsed = parse_user_dict(user_dict)
        if replace:
            check_forest(parsed)
            yield Call("replace_all", (parsed,))
            if progress is not None:
                progress(len(parsed), len(parsed))
            return len(parsed)
        stored_parents: dict[str, UserRecord] = {}
        for record in parsed.values():
            parent = record.parent
            if parent is not None and parent not in parsed and parent not in stored_parents:
                found: UserRecord | None = yield Call("get", (parent,))
                if found is None:
                    raise HierarchyError(f"parent {parent!r} has no budget, here or in the file")
                stored_parents[parent] = UserRecord(found.total_budget)  # its own parent: stored
        check_forest({**stored_parents, **parsed})
        for done, user in enumerate(parents_first(parsed), 1):
            yield Call("put", (user, parsed[user]))
            if progress is not None:
                progress(done, len(parsed))
        return len(parsed)

    def _export_users(self) -> Flow[str]:
        """Every budget as the text of a LiteLLM ``user_cost.json`` (amounts written exactly):
        what :meth:`import_users` and LiteLLM's BudgetManager read."""
        found: dict[str, UserRecord] = yield Call("records")
        return records.dump_user_dict(found)

    def on_event(self, listener: Listener) -> None:
        """Call ``listener(event)`` after every change this manager makes."""
        self._ops.subscribe(listener)

    @overload
    def on_threshold(
        self, fractions: Iterable[float | str | Decimal] = DEFAULT_FRACTIONS, callback: None = None
    ) -> Callable[[C], C]: ...
    @overload
    def on_threshold(
        self, fractions: Iterable[float | str | Decimal] = DEFAULT_FRACTIONS, *, callback: C
    ) -> C: ...
    def on_threshold(
        self,
        fractions: Iterable[float | str | Decimal] = DEFAULT_FRACTIONS,
        callback: C | None = None,
    ) -> C | Callable[[C], C]:
        """Call ``callback(alert)`` when the spend of a budget (a user's, or any ancestor's it is
        charged through) reaches one of ``fractions`` of it: one
        :class:`~budget_manager.events.Alert` with ``user``, ``fraction``, ``spent``, ``budget``
        and ``period_start``. Each fraction fires once per budget and period, whichever process
        or machine crosses it: the mark is kept in the store with the change that crossed it. A
        hold crosses when it is settled. Without ``callback``, a decorator. An asyncio manager
        also takes a coroutine function (run as a task)."""
        watched = frozenset(alert_fractions(fractions))

        def register(function: C) -> C:
            if not callable(function):
                raise InvalidInputError(f"callback must be callable, got {function!r}")
            if inspect.iscoroutinefunction(function) and not self._asynchronous:
                raise InvalidInputError("an async alert callback needs AsyncBudgetManager")
            self._watch(watched)
            self.on_event(_alerting(watched, function))
            return function

        return register if callback is None else register(callback)

    def _watch(self, fractions: frozenset[Decimal]) -> None:
        self._ops.watch(fractions)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.project_name!r}, store={self._store!r})"

    _store: Any


def _alerting(fractions: frozenset[Decimal], callback: AlertCallback) -> Listener:
    """A listener calling ``callback`` with each alert of ``fractions`` an event carries."""

    def hear(event: Event) -> None:
        for alert in event.alerts:
            if Decimal(str(alert.fraction)) in fractions:
                outcome = callback(alert)
                if inspect.isawaitable(outcome):
                    _run_soon(outcome)

    return hear


_running: set[asyncio.Task[Any]] = set()  # tasks of async callbacks, kept until they finish


def _run_soon(awaitable: Any) -> None:
    """Run an async alert callback's awaitable as a task of the running loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        awaitable.close()
        raise InvalidInputError(
            "an async alert callback needs AsyncBudgetManager (no event loop is running)"
        ) from None
    task = loop.create_task(awaitable)
    _running.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("alert callback failed", exc_info=task.exception())


def completion_limit(kwargs: dict[str, Any], max_tokens: MaxTokens) -> tuple[str, MaxTokens]:
    """The request field that carries the output limit (``max_completion_tokens`` when the
    caller used it, else ``max_tokens``) and its value, taken out of ``kwargs``."""
    if "max_completion_tokens" in kwargs:
        return "max_completion_tokens", kwargs.pop("max_completion_tokens")
    return "max_tokens", max_tokens


def parse_user_dict(user_dict: Mapping[str, Any]) -> dict[str, UserRecord]:
    """The records of a user dict, every one checked; InvalidInputError names the first bad one."""
    if not isinstance(user_dict, Mapping):
        raise InvalidInputError(
            f"a user dict must map user names to records, got {type(user_dict).__name__}"
        )
    parsed: dict[str, UserRecord] = {}
    for user, data in user_dict.items():
        names.check(user, "user")
        try:
            parsed[user] = records.from_json(user, data)
        except CorruptStoreError as exc:
            raise InvalidInputError(str(exc)) from None
    return parsed


def parents_first(parsed: Mapping[str, UserRecord]) -> list[str]:
    """The users of ``parsed`` ordered so that a parent comes before the budgets below it."""
    ordered: list[str] = []
    placed: set[str] = set()

    def place(user: str, seen: tuple[str, ...]) -> None:
        if user in placed or user not in parsed:
            return
        parent = parsed[user].parent
        if parent is not None and parent not in seen:
            place(parent, (*seen, user))
        placed.add(user)
        ordered.append(user)

    for user in parsed:
        place(user, ())
    return ordered


def _user(user: object) -> str:
    return names.check(user, "user")


def _tokens(value: Mapping[str, int] | None) -> dict[str, int] | None:
    """Token counts for the history (InvalidInputError unless names to non-negative ints)."""
    if not value:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and type(v) is int and v >= 0 for k, v in value.items()
    ):
        raise InvalidInputError(
            f'tokens must map names to counts, such as {{"prompt": 812}}, got {value!r}'
        )
    return dict(value)


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
