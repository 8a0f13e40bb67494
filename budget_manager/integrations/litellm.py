"""Budgets for people who call ``litellm.completion`` / ``litellm.acompletion`` (the
``[litellm]`` extra).

- :class:`BudgetCallback`: a LiteLLM ``CustomLogger`` for ``litellm.callbacks``. It charges every
  successful call, sync or async, streamed or not, once, to the request's ``user``, priced by this
  library from the usage the response reports. On ``litellm.acompletion`` it also holds the
  call's worst case before it is sent, so a call over budget raises BudgetExceededError and is not
  sent; LiteLLM 1.110.2 gives ``litellm.completion`` no hook that can refuse a call, so there the
  callback can only charge.
- :func:`completion` / :func:`acompletion`: full enforcement for every call, sync or async: the
  worst case held before sending, the hold settled with what the response reports (a stream: when
  it ends or is closed), released if the call fails.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Mapping
from decimal import Decimal
from typing import Any

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "budget_manager.integrations.litellm needs LiteLLM: pip install 'budget-manager[litellm]'"
    ) from exc

from ..async_manager import AsyncBudgetManager
from ..errors import InvalidInputError, UnknownModelError
from ..hold import AsyncHold, Hold, HoldBase
from ..manager import BudgetManager
from .litellm_calls import (
    WRAPPED,
    CallIds,
    acharge,
    charge,
    litellm_cost_of,
    output_limit,
    price,
    require_user,
    stream_price,
    user_of,
)
from .litellm_streams import AsyncBudgetedStream, BudgetedStream

logger = logging.getLogger("budget_manager")

Manager = BudgetManager | AsyncBudgetManager
_CHAT_CALLS = ("completion", "acompletion")


class BudgetCallback(CustomLogger):
    """Charge every successful LiteLLM call to its ``user`` (``user=``, or
    ``metadata={"user": ...}``) on ``manager`` (a :class:`~budget_manager.BudgetManager` or an
    :class:`~budget_manager.AsyncBudgetManager`)::

        litellm.callbacks = [BudgetCallback(manager)]

    The cost is this library's price of the usage the response reports (cached and reasoning
    tokens included; a stream: the response LiteLLM assembles at its end). A model this library
    has no price for is charged LiteLLM's own ``response_cost``.

    On ``litellm.acompletion`` the call's worst case is held before it is sent (LiteLLM's
    ``async_pre_call_deployment_hook``): over budget, BudgetExceededError reaches the caller and
    nothing is sent; the hold is settled on success and released on failure.
    ``litellm.completion`` can only be charged after the fact (use :func:`completion` to refuse).
    A call without a user cannot be charged; it is logged as a warning.
    """

    def __init__(self, manager: Manager, **options: Any) -> None:
        if not isinstance(manager, (BudgetManager, AsyncBudgetManager)):
            raise InvalidInputError(
                f"BudgetCallback needs a BudgetManager or AsyncBudgetManager, got {manager!r}"
            )
        super().__init__(**options)
        self.manager = manager
        self._holds: dict[str, HoldBase] = {}
        self._charged = CallIds()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._pending: set[str] = set()
        self._idle = threading.Condition()

    # -- waiting for charges ---------------------------------------------------------------------
    def wait(self, timeout: float = 30.0) -> bool:
        """Block until every call sent so far has been charged (or released, if it failed);
        False if some still were not after ``timeout`` seconds. LiteLLM runs success callbacks
        after the call returns (on its logging threads), so read spend after this."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    async def async_wait(self, timeout: float = 30.0) -> bool:
        """:meth:`wait` for asyncio: LiteLLM runs ``acompletion``'s success callbacks on a
        worker of the running event loop, after the call returns (one that ends first leaves
        them to the next loop, or to no one when the process exits)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._pending:
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        """Note a call about to be sent, so that :meth:`wait` waits for its charge."""
        call_id = kwargs.get("litellm_call_id")
        if isinstance(call_id, str) and call_id not in WRAPPED and user_of(kwargs) is not None:
            with self._idle:
                self._pending.add(call_id)

    def _finished(self, call_id: object) -> None:
        with self._idle:
            self._pending.discard(str(call_id))
            self._idle.notify_all()

    # -- before sending (litellm.acompletion only) -----------------------------------------------
    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, Any], call_type: Any
    ) -> dict[str, Any] | None:
        """Hold the call's worst case on its user's budget (BudgetExceededError: not sent)."""
        if str(getattr(call_type, "value", call_type)) not in _CHAT_CALLS:
            return None
        call_id, user = kwargs.get("litellm_call_id"), user_of(kwargs)
        if not isinstance(call_id, str) or user is None or call_id in WRAPPED:
            return None
        limit = output_limit(kwargs)[1]
        options: dict[str, Any] = {
            "model": kwargs.get("model"),
            "messages": kwargs.get("messages"),
            "max_tokens": limit if isinstance(limit, int) else None,
            "hold_id": call_id,
        }
        manager = self.manager
        if isinstance(manager, AsyncBudgetManager):
            hold: HoldBase = await manager.reserve(user, **options)
        else:
            hold = await asyncio.to_thread(manager.reserve, user, **options)
        self._holds[call_id] = hold
        return None

    # -- after the call --------------------------------------------------------------------------
    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Charge a ``litellm.completion`` call (``acompletion``'s are charged by the async
        hook)."""
        if _is_async(kwargs):
            return
        call = self._claim(kwargs)
        if call is None:
            return
        if isinstance(self.manager, AsyncBudgetManager):
            self._run(self._arecord(call, kwargs, response_obj))
        else:
            self._record(call, kwargs, response_obj)

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Settle the hold of a ``litellm.acompletion`` call (or charge it if it has none)."""
        call = self._claim(kwargs)
        if call is None:
            return
        if isinstance(self.manager, AsyncBudgetManager):
            await self._arecord(call, kwargs, response_obj)
        else:
            await asyncio.to_thread(self._record, call, kwargs, response_obj)

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if not _is_async(kwargs):
            hold = self._holds.pop(str(kwargs.get("litellm_call_id")), None)
            try:
                if isinstance(hold, Hold):
                    hold.release()
            finally:
                self._finished(kwargs.get("litellm_call_id"))

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Release the hold of a call that failed."""
        hold = self._holds.pop(str(kwargs.get("litellm_call_id")), None)
        try:
            if isinstance(hold, AsyncHold):
                await hold.release()
            elif isinstance(hold, Hold):
                await asyncio.to_thread(hold.release)
        finally:
            self._finished(kwargs.get("litellm_call_id"))

    # -- helpers ---------------------------------------------------------------------------------
    def _claim(self, kwargs: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(call id, user)`` of a call to charge now, or None (no user, a wrapped call, or
        already charged)."""
        call_id = kwargs.get("litellm_call_id")
        if not isinstance(call_id, str) or call_id in WRAPPED:
            return None
        user = user_of(kwargs)
        if user is None:
            logger.warning(
                "LiteLLM call %s (model %s) has no user= to charge: not budgeted",
                call_id,
                kwargs.get("model"),
            )
            return None
        return (call_id, user) if self._charged.add(call_id) else None

    def _record(self, call: tuple[str, str], kwargs: Mapping[str, Any], response: Any) -> None:
        try:
            self._record_now(call, kwargs, response)
        finally:
            self._finished(call[0])

    def _record_now(self, call: tuple[str, str], kwargs: Mapping[str, Any], response: Any) -> None:
        call_id, user = call
        hold = self._holds.pop(call_id, None)
        priced = _priced(kwargs, response)
        if priced is None:
            if isinstance(hold, Hold):
                hold.settle()
            return
        model, cost, tokens = priced
        if isinstance(hold, Hold):
            hold.settle(cost=cost, model=model)
        else:
            assert isinstance(self.manager, BudgetManager)
            charge(self.manager, user, model, cost, tokens, call_id)

    async def _arecord(
        self, call: tuple[str, str], kwargs: Mapping[str, Any], response: Any
    ) -> None:
        try:
            await self._arecord_now(call, kwargs, response)
        finally:
            self._finished(call[0])

    async def _arecord_now(
        self, call: tuple[str, str], kwargs: Mapping[str, Any], response: Any
    ) -> None:
        call_id, user = call
        hold = self._holds.pop(call_id, None)
        priced = _priced(kwargs, response)
        if priced is None:
            if isinstance(hold, AsyncHold):
                await hold.settle()
            return
        model, cost, tokens = priced
        if isinstance(hold, AsyncHold):
            await hold.settle(cost=cost, model=model)
        else:
            assert isinstance(self.manager, AsyncBudgetManager)
            await acharge(self.manager, user, model, cost, tokens, call_id)

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run an AsyncBudgetManager's charge from LiteLLM's sync hook: as a task on the loop
        running in this thread, else to its end here."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(work)
            return
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def completion(manager: BudgetManager, **kwargs: Any) -> Any:
    """``litellm.completion(**kwargs)`` within the budget of ``kwargs["user"]`` on ``manager``.

    The call's worst case (from ``messages`` and ``max_tokens`` / ``max_completion_tokens``, else
    the model's output limit) is held first: BudgetExceededError, and nothing sent, when it does
    not fit. ``max_tokens="fit"`` sends the largest ``max_tokens`` the budget can still pay for.
    The hold is settled with the usage the response reports; ``stream=True`` returns LiteLLM's
    stream, settled when it ends or is closed (usage requested with
    ``stream_options={"include_usage": True}``, else counted); an error releases the hold.
    """
    if not isinstance(manager, BudgetManager):
        raise InvalidInputError(f"completion() needs a BudgetManager, got {manager!r}")
    import litellm

    user, model, messages, limit_key, max_tokens = _request(kwargs)
    hold = manager.reserve(user, model=model, messages=messages, max_tokens=max_tokens)
    _prepare(kwargs, hold, limit_key)
    try:
        response = litellm.completion(**kwargs)
    except BaseException:
        hold.release()
        raise
    if kwargs.get("stream"):

        def settle(chunks: list[Any]) -> None:
            named, cost, tokens = stream_price(chunks, hold.model or model, messages)
            hold.settle(cost=cost, model=named, tokens=tokens)

        return BudgetedStream(response, settle)
    _settle(hold, response)
    return response


async def acompletion(manager: AsyncBudgetManager, **kwargs: Any) -> Any:
    """``await litellm.acompletion(**kwargs)`` within the budget of ``kwargs["user"]``, as
    :func:`completion` does it (``stream=True``: ``async for``, settled when it ends or is
    closed with ``await stream.aclose()``)."""
    if not isinstance(manager, AsyncBudgetManager):
        raise InvalidInputError(f"acompletion() needs an AsyncBudgetManager, got {manager!r}")
    import litellm

    user, model, messages, limit_key, max_tokens = _request(kwargs)
    hold = await manager.reserve(user, model=model, messages=messages, max_tokens=max_tokens)
    _prepare(kwargs, hold, limit_key)
    try:
        response = await litellm.acompletion(**kwargs)
    except BaseException:
        await hold.release()
        raise
    if kwargs.get("stream"):

        async def settle(chunks: list[Any]) -> None:
            named, cost, tokens = stream_price(chunks, hold.model or model, messages)
            await hold.settle(cost=cost, model=named, tokens=tokens)

        return AsyncBudgetedStream(response, settle)
    try:
        await hold.settle(response)
    except UnknownModelError:
        await hold.settle(cost=_known_cost(response))
    return response


def _request(kwargs: dict[str, Any]) -> tuple[str, str, Any, str, Any]:
    """Who pays, the model, the messages, and the output limit's field and value (taken out of
    ``kwargs``: the hold decides what is sent)."""
    user = require_user(kwargs)
    model = kwargs.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInputError(f"model must be a non-empty string, got {model!r}", "model")
    if kwargs.get("max_tokens") is not None and kwargs.get("max_completion_tokens") is not None:
        raise InvalidInputError("give max_tokens or max_completion_tokens, not both", "max_tokens")
    limit_key, max_tokens = output_limit(kwargs)
    kwargs.pop(limit_key, None)
    return user, model, kwargs.get("messages"), limit_key, max_tokens


def _prepare(kwargs: dict[str, Any], hold: HoldBase, limit_key: str) -> None:
    """Send no more output than the hold pays for, under the hold's id as LiteLLM's call id
    (so a BudgetCallback also registered leaves the call to this wrapper)."""
    if hold.max_tokens is not None:
        kwargs[limit_key] = hold.max_tokens
    kwargs["litellm_call_id"] = hold.id
    WRAPPED.add(hold.id)
    if kwargs.get("stream"):
        kwargs.setdefault("stream_options", {"include_usage": True})


def _settle(hold: Hold, response: Any) -> None:
    try:
        hold.settle(response)
    except UnknownModelError:
        hold.settle(cost=_known_cost(response))


def _known_cost(response: Any) -> Any:
    """LiteLLM's price of a response this library cannot price (None, the held amount, if it
    has none either)."""
    try:
        return price(response, None, litellm_cost_of(response))[1]
    except UnknownModelError:
        return None


def _priced(
    kwargs: Mapping[str, Any], response: Any
) -> tuple[str | None, Decimal, dict[str, int] | None] | None:
    """A successful call's model, cost and tokens; None (logged) when neither this library nor
    LiteLLM has a price for it: a hold is then settled at the amount it held."""
    try:
        return price(response, kwargs.get("model"), kwargs.get("response_cost"))
    except UnknownModelError as exc:
        logger.error(
            "LiteLLM call %s for %r cannot be priced (%s): a hold is charged what it held, "
            "a call without one is not charged",
            kwargs.get("litellm_call_id"),
            user_of(kwargs),
            exc,
        )
        return None


def _is_async(kwargs: Mapping[str, Any]) -> bool:
    params = kwargs.get("litellm_params") or {}
    return params.get("acompletion") is True


__all__ = ["BudgetCallback", "acompletion", "completion"]
