"""The arithmetic of a call's cost: usage x prices, exactly."""

from __future__ import annotations

from decimal import Decimal

from ..errors import InvalidInputError
from ..money import ZERO, multiply
from .prices import ModelPrices
from .usage import Usage


def usage_cost(prices: ModelPrices, usage: Usage) -> tuple[Decimal, Decimal]:
    """``(prompt cost, completion cost)`` in USD of ``usage`` at ``prices``.

    Cached prompt tokens are priced at the cache-read price and cache writes at the cache-write
    price (the input price where the model has none); reasoning tokens at the reasoning price where
    the model has one; a prompt larger than a tier's threshold is priced wholly at that tier.
    """
    tier = None
    for candidate in prices.tiers:
        if usage.prompt_tokens > candidate.threshold:
            tier = candidate
            break
    if tier is None:
        input_price, output_price = prices.input, prices.output
        read_price, write_price = prices.cache_read, prices.cache_write
    else:
        input_price, output_price = tier.input, tier.output
        read_price = tier.cache_read if tier.cache_read is not None else prices.cache_read
        write_price = tier.cache_write if tier.cache_write is not None else prices.cache_write

    uncached = usage.prompt_tokens - usage.cache_read_tokens - usage.cache_write_tokens
    if uncached < 0:
        raise InvalidInputError(
            f"usage reports more cached tokens ({usage.cache_read_tokens + usage.cache_write_tokens})"
            f" than prompt tokens ({usage.prompt_tokens})"
        )
    prompt_cost = multiply(input_price, uncached)
    if usage.cache_read_tokens:
        prompt_cost += multiply(
            read_price if read_price is not None else input_price, usage.cache_read_tokens
        )
    if usage.cache_write_tokens:
        prompt_cost += multiply(
            write_price if write_price is not None else input_price, usage.cache_write_tokens
        )

    if usage.reasoning_tokens and prices.reasoning is not None:
        plain = max(usage.completion_tokens - usage.reasoning_tokens, 0)
        completion_cost = multiply(output_price, plain) + multiply(
            prices.reasoning, usage.reasoning_tokens
        )
    else:
        completion_cost = (
            multiply(output_price, usage.completion_tokens) if usage.completion_tokens else ZERO
        )
    return prompt_cost, completion_cost
