"""What the LiteLLM integration reads from a LiteLLM call: who pays, what limit it sends, what it
cost by this library's prices, and which calls the enforcing wrappers already budget."""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .. import costs
from ..errors import InvalidInputError, UnknownModelError
from ..manager_flows import ManagerFlows
from ..money import to_money
from ..operations import awaiting, blocking

logger = logging.getLogger("budget_manager")

#: a priced cost charged to a user, idempotent by key where the store keys charges
charge = blocking(ManagerFlows._charge)
acharge = awaiting(ManagerFlows._charge)


def user_of(kwargs: Mapping[str, Any]) -> str | None:
    """The user a LiteLLM call is for: its ``user=`` (OpenAI's field, as LiteLLM passes it on),
    else ``metadata={"user": ...}`` (in the request, or where LiteLLM files it under
    ``litellm_params``)."""
    params = kwargs.get("litellm_params") or {}
    for where in (kwargs, kwargs.get("optional_params") or {}, params):
        user = where.get("user")
        if isinstance(user, str) and user:
            return user
    for where in (kwargs, params):
        metadata = where.get("metadata")
        if isinstance(metadata, Mapping):
            user = metadata.get("user")
            if isinstance(user, str) and user:
                return user
    return None


def output_limit(kwargs: Mapping[str, Any]) -> tuple[str, Any]:
    """The request field that carries the output limit and its value (None: not given)."""
    if kwargs.get("max_completion_tokens") is not None:
        return "max_completion_tokens", kwargs["max_completion_tokens"]
    return "max_tokens", kwargs.get("max_tokens")


def price(
    response: Any, model: str | None, litellm_cost: Any = None
) -> tuple[str | None, Decimal, dict[str, int] | None]:
    """``(model, cost, token counts)`` of a LiteLLM response (or list of streamed chunks), by
    this library's prices and the usage the response reports.

    A model this library has no price for is charged what LiteLLM priced it at
    (``litellm_cost``): the call was made and money spent, so charging nothing would under-count;
    when neither knows a price, UnknownModelError."""
    try:
        priced = costs.price_response(response, model)
    except UnknownModelError:
        if not _is_cost(litellm_cost):
            raise
        named = getattr(response, "model", None) or model
        logger.warning("%s has no price here: charged LiteLLM's cost %s", named, litellm_cost)
        return named, to_money(litellm_cost, "response_cost"), None
    return priced.model, priced.cost, priced.usage.counts() or None


def stream_price(
    chunks: list[Any], model: str, messages: Any, litellm_cost: Any = None
) -> tuple[str | None, Decimal, dict[str, int] | None]:
    """``(model, cost, tokens)`` of a stream's chunks: the usage the last chunk reports, else
    the prompt and the text received counted with the model's tokenizer."""
    try:
        priced = costs.price_response(chunks, default_model=model, messages=messages)
    except UnknownModelError:
        if not _is_cost(litellm_cost):
            raise
        return model, to_money(litellm_cost, "response_cost"), None
    return priced.model, priced.cost, priced.usage.counts() or None


def litellm_cost_of(response: Any) -> Any:
    """What LiteLLM priced a response at (None when it did not)."""
    hidden = getattr(response, "_hidden_params", None)
    return hidden.get("response_cost") if isinstance(hidden, Mapping) else None


def _is_cost(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def require_user(kwargs: Mapping[str, Any]) -> str:
    """The ``user=`` of a wrapped call; InvalidInputError (nothing sent) without one."""
    user = kwargs.get("user")
    if not isinstance(user, str) or not user:
        raise InvalidInputError(
            "a budgeted LiteLLM call needs user=<the budget's user>, got " + repr(user), "user"
        )
    return user


class CallIds:
    """Ids of recent calls, to act on each once (bounded: the oldest are forgotten first)."""

    def __init__(self, keep: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def add(self, call_id: str) -> bool:
        """Remember ``call_id``; False if it was already remembered."""
        with self._lock:
            if call_id in self._ids:
                return False
            self._ids[call_id] = None
            if len(self._ids) > self._keep:
                self._ids.popitem(last=False)
            return True

    def __contains__(self, call_id: object) -> bool:
        with self._lock:
            return call_id in self._ids


#: calls the enforcing wrappers reserve and settle themselves (BudgetCallback leaves them alone)
WRAPPED = CallIds()
