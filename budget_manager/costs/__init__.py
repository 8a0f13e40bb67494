"""What calls cost: the price table, usage read from responses, and the arithmetic between them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from .. import tokens
from ..errors import InvalidInputError, UnknownModelError
from ..money import to_float
from .calculate import usage_cost
from .table import TABLE, Entry
from .usage import Usage, model_of, usage_of

model_cost: Mapping[str, Entry] = TABLE.view()


def register_model(prices: Mapping[str, Entry]) -> None:
    """Add or override model prices, in LiteLLM's ``model_prices_and_context_window.json`` format.

    ``register_model({"my-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}})``
    """
    TABLE.register(prices)


def cost_per_token(
    model: str, prompt_tokens: int = 0, completion_tokens: int = 0
) -> tuple[float, float]:
    """``(prompt cost, completion cost)`` in USD for the given token counts of ``model``."""
    usage = Usage(
        prompt_tokens=_count(prompt_tokens, "prompt_tokens"),
        completion_tokens=_count(completion_tokens, "completion_tokens"),
    )
    prompt, completion = usage_cost(TABLE.prices(model)[1], usage)
    return to_float(prompt), to_float(completion)


def response_cost(response: Any, default_model: str | None = None) -> tuple[str, Decimal]:
    """``(model, exact USD cost)`` of one response; the response's model wins over the default."""
    usage = usage_of(response)
    model = model_of(response)
    if model is None or not TABLE.knows(model):
        model = default_model or model
    if model is None:
        raise InvalidInputError("the response names no model; pass model= to price it")
    prompt, completion = usage_cost(TABLE.prices(model)[1], usage)
    return model, prompt + completion


def text_cost(model: str, prompt_text: str, completion_text: str) -> Decimal:
    """Exact cost of a prompt given as one user message and a completion given as plain text."""
    if not isinstance(prompt_text, str) or not isinstance(completion_text, str):
        raise InvalidInputError("input_text and output_text must be strings")
    prices = TABLE.prices(model)[1]  # fail on an unknown model before counting tokens
    usage = Usage(
        prompt_tokens=tokens.count_messages(model, [{"role": "user", "content": prompt_text}]),
        completion_tokens=tokens.count_text(model, completion_text),
    )
    prompt, completion = usage_cost(prices, usage)
    return prompt + completion


def messages_cost(model: str, messages: Iterable[Mapping[str, Any]]) -> Decimal:
    """Exact prompt cost of sending ``messages`` to ``model``."""
    prices = TABLE.prices(model)[1]
    prompt, _ = usage_cost(prices, Usage(prompt_tokens=tokens.count_messages(model, messages)))
    return prompt


def completion_cost(
    completion_response: Any = None,
    model: str | None = None,
    prompt: str = "",
    completion: str = "",
    messages: Iterable[Mapping[str, Any]] | None = None,
) -> float:
    """USD cost of one response, or of ``model`` with ``prompt``/``messages`` and ``completion`` text."""
    if completion_response is not None:
        return to_float(response_cost(completion_response, model)[1])
    if model is None:
        raise InvalidInputError("completion_cost needs a response, or model= with text")
    if messages is not None:
        prompt_cost = messages_cost(model, messages)
        usage = Usage(completion_tokens=tokens.count_text(model, completion))
        return to_float(prompt_cost + usage_cost(TABLE.prices(model)[1], usage)[1])
    return to_float(text_cost(model, prompt, completion))


def require_price(model: str) -> None:
    """Raise UnknownModelError unless ``model`` has a price."""
    TABLE.prices(model)


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{what} must be a whole number >= 0, got {value!r}")
    return value


__all__ = [
    "UnknownModelError",
    "completion_cost",
    "cost_per_token",
    "messages_cost",
    "model_cost",
    "register_model",
    "require_price",
    "response_cost",
    "text_cost",
]
