"""One model's prices, compiled from its table entry into exact Decimals once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..money import ZERO, to_money

_TIER = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")


@dataclass(frozen=True, slots=True)
class Tier:
    """Prices that apply, instead of the base ones, when a prompt exceeds ``threshold`` tokens."""

    threshold: int
    input: Decimal
    output: Decimal
    cache_read: Decimal | None
    cache_write: Decimal | None


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """Per-token prices of one model, in USD."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    reasoning: Decimal | None = None
    tiers: tuple[Tier, ...] = ()


def _price(entry: Mapping[str, Any], key: str) -> Decimal | None:
    value = entry.get(key)
    return None if value is None else to_money(value, key)


def compile_prices(entry: Mapping[str, Any]) -> ModelPrices:
    """Exact prices from a LiteLLM-format entry; tiers sorted from the highest threshold down."""
    tiers = []
    for key in entry:
        match = _TIER.match(key)
        if match is None:
            continue
        suffix = f"_above_{match.group(1)}k_tokens"
        tiers.append(
            Tier(
                threshold=int(match.group(1)) * 1000,
                input=_price(entry, key) or ZERO,
                output=_price(entry, "output_cost_per_token" + suffix)
                or _price(entry, "output_cost_per_token")
                or ZERO,
                cache_read=_price(entry, "cache_read_input_token_cost" + suffix),
                cache_write=_price(entry, "cache_creation_input_token_cost" + suffix),
            )
        )
    return ModelPrices(
        input=_price(entry, "input_cost_per_token") or ZERO,
        output=_price(entry, "output_cost_per_token") or ZERO,
        cache_read=_price(entry, "cache_read_input_token_cost"),
        cache_write=_price(entry, "cache_creation_input_token_cost"),
        cache_write_1h=_price(entry, "cache_creation_input_token_cost_above_1hr"),
        reasoning=_price(entry, "output_cost_per_reasoning_token"),
        tiers=tuple(sorted(tiers, key=lambda t: t.threshold, reverse=True)),
    )
