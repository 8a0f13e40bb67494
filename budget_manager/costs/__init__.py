"""What calls cost: the price table, usage read from responses, and the arithmetic between them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from .. import tokens
from ..errors import InvalidInputError, UnknownModelError
from ..money import add, to_float
from .calculate import usage_cost
from .prices import ModelPrices
from .streams import fold, is_stream
from .table import TABLE, Entry
from .usage import Usage, model_of, read_usage, usage_of

model_cost: Mapping[str, Entry] = TABLE.view()


def register_model(prices: Mapping[str, Entry] | str, **_ignored: Any) -> None:
    """Add or override model prices, in LiteLLM's ``model_prices_and_context_window.json`` format.

    ``register_model({"my-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}})``;
    as in LiteLLM, a URL (or path) of such a JSON document adds all of its models.
    """
    if isinstance(prices, str):
        load_cost_table(prices, merge=True)
        return
    TABLE.register(prices)


def load_cost_table(
    source: str | os.PathLike[str], *, merge: bool = False, timeout: float = 30.0
) -> int:
    """Replace the price table with the one at ``source`` (a path or an http(s) URL of a
    LiteLLM-format ``model_prices_and_context_window.json``), or with ``merge=True`` add its
    models to the current one. The document is validated whole before anything changes: a bad or
    partial one raises InvalidInputError and leaves the table as it was. Returns the number of
    models read."""
    text = os.fspath(source)
    if text.startswith(("http://", "https://")):
        import requests

        try:
            reply = requests.get(text, timeout=timeout)
            reply.raise_for_status()
        except requests.RequestException as error:
            raise InvalidInputError(f"could not download the price table {text}: {error}") from None
        raw = reply.content
    else:
        try:
            raw = Path(text).read_bytes()
        except OSError as error:
            raise InvalidInputError(f"could not read the price table {text}: {error}") from None
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise InvalidInputError(f"price table {text} is not valid JSON: {error}") from None
    return TABLE.load(document, merge=merge, source=text)


def cost_per_token(
    model: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    *,
    cache_creation_input_tokens: int | None = 0,
    cache_read_input_tokens: int | None = 0,
    usage_object: Any = None,
    service_tier: str | None = None,
    custom_llm_provider: str | None = None,
    **_ignored: Any,
) -> tuple[float, float]:
    """``(prompt cost, completion cost)`` in USD for the given token counts of ``model``.

    ``prompt_tokens`` includes cached ones (``cache_read_input_tokens``) and cache writes
    (``cache_creation_input_tokens``); ``usage_object`` (any usage shape) replaces the counts.
    """
    if usage_object is not None:
        usage = read_usage(usage_object, service_tier)
    else:
        usage = Usage(
            prompt_tokens=_count(prompt_tokens, "prompt_tokens"),
            completion_tokens=_count(completion_tokens, "completion_tokens"),
            cache_read_tokens=_count(cache_read_input_tokens or 0, "cache_read_input_tokens"),
            cache_write_tokens=_count(
                cache_creation_input_tokens or 0, "cache_creation_input_tokens"
            ),
            service_tier=service_tier,
        )
    prompt, completion = usage_cost(_prices(model, custom_llm_provider), usage)
    return to_float(prompt), to_float(completion)


class Priced(NamedTuple):
    """A call priced: the model it was priced as, its exact USD cost, and its usage."""

    model: str
    cost: Decimal
    usage: Usage


def price_response(
    response: Any,
    default_model: str | None = None,
    *,
    now: float | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
) -> Priced:
    """One response (or stream of chunks) priced; the response's model wins over the default
    when the table knows it. A stream that reports no usage is priced from ``messages`` and the
    text it carried."""
    if is_stream(response):
        folded = fold(response)
        model, prices = _priced(folded.model, default_model)
        if folded.usage is None:
            return price_counted(model, messages, folded.text, now)
        usage = read_usage(folded.usage, folded.service_tier)
    else:
        usage = usage_of(response)
        model, prices = _priced(model_of(response), default_model)
    return Priced(model, add(*usage_cost(prices, usage, now)), usage)


def response_cost(
    response: Any,
    default_model: str | None = None,
    *,
    now: float | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
) -> tuple[str, Decimal]:
    """``(model, exact USD cost)`` of one response: see :func:`price_response`."""
    priced = price_response(response, default_model, now=now, messages=messages)
    return priced.model, priced.cost


def price_counted(
    model: str,
    messages: Iterable[Mapping[str, Any]] | None,
    completion_text: str,
    now: float | None = None,
) -> Priced:
    """Sending ``messages`` (none: no prompt) and receiving ``completion_text`` priced, the
    tokens counted with the model's tokenizer."""
    prices = TABLE.prices(model)  # fail on an unknown model before counting tokens
    usage = Usage(
        prompt_tokens=tokens.count_messages(model, messages) if messages is not None else 0,
        completion_tokens=tokens.count_text(model, completion_text),
    )
    return Priced(model, add(*usage_cost(prices, usage, now)), usage)


def counted_cost(
    model: str,
    messages: Iterable[Mapping[str, Any]] | None,
    completion_text: str,
    now: float | None = None,
) -> Decimal:
    """Exact cost of sending ``messages`` and receiving ``completion_text`` (see
    :func:`price_counted`)."""
    return price_counted(model, messages, completion_text, now).cost


def price_text(model: str, prompt_text: str, completion_text: str) -> Priced:
    """A prompt given as one user message and a completion given as plain text, priced."""
    if not isinstance(prompt_text, str) or not isinstance(completion_text, str):
        raise InvalidInputError("input_text and output_text must be strings")
    return price_counted(model, [{"role": "user", "content": prompt_text}], completion_text)


def text_cost(model: str, prompt_text: str, completion_text: str) -> Decimal:
    """Exact cost of a prompt given as one user message and a completion given as plain text."""
    return price_text(model, prompt_text, completion_text).cost


def messages_cost(model: str, messages: Iterable[Mapping[str, Any]]) -> Decimal:
    """Exact prompt cost of sending ``messages`` to ``model``."""
    prices = TABLE.prices(model)
    prompt, _ = usage_cost(prices, Usage(prompt_tokens=tokens.count_messages(model, messages)))
    return prompt


def completion_cost(
    completion_response: Any = None,
    model: str | None = None,
    prompt: str = "",
    completion: str = "",
    messages: Iterable[Mapping[str, Any]] | None = None,
    **_ignored: Any,
) -> float:
    """USD cost of one response (or list/iterator of streamed chunks), or of ``model`` with
    ``prompt``/``messages`` and ``completion`` text."""
    if completion_response is not None:
        return to_float(response_cost(completion_response, model, messages=messages)[1])
    if model is None:
        raise InvalidInputError("completion_cost needs a response, or model= with text")
    if messages is not None:
        return to_float(counted_cost(model, messages, completion))
    return to_float(text_cost(model, prompt, completion))


def has_price(model: str) -> bool:
    """Whether ``model`` has a price in the table."""
    return TABLE.find(model) is not None


def require_price(model: str) -> None:
    """Raise UnknownModelError unless ``model`` has a price."""
    TABLE.prices(model)


def _priced(named: str | None, default: str | None) -> tuple[str, ModelPrices]:
    # The response's own model when the table knows it, else the caller's.
    if named is not None:
        prices = TABLE.find(named)
        if prices is not None:
            return named, prices
    model = default or named
    if model is None:
        raise InvalidInputError("the response names no model; pass model= to price it")
    return model, TABLE.prices(model)


def _prices(model: str, provider: str | None) -> ModelPrices:
    if provider and isinstance(model, str) and not model.startswith(provider + "/"):
        prices = TABLE.find(f"{provider}/{model}")
        if prices is not None:
            return prices
    return TABLE.prices(model)


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{what} must be a whole number >= 0, got {value!r}")
    return value


__all__ = [
    "UnknownModelError",
    "completion_cost",
    "cost_per_token",
    "has_price",
    "load_cost_table",
    "messages_cost",
    "model_cost",
    "register_model",
    "require_price",
    "response_cost",
    "text_cost",
]
