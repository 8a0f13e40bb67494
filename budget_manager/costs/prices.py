"""One model's prices: its table entry compiled into exact Decimals once, and the per-token rates
that apply to a call (by prompt size, service tier and time of day)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..money import ZERO, to_money
from .offpeak import is_off_peak

# The service tiers a response may name, and the suffix of the table keys that price them.
SERVICE_TIERS = {
    "flex": "flex",
    "balanced": "balanced",
    "priority": "priority",
    "fast": "priority",
    "ultrafast": "ultrafast",
}
# Longest first, so "_ultrafast" is recognised before anything it contains.
_TIER_SUFFIXES = ("_ultrafast", "_balanced", "_priority", "_auto", "_flex", "_fast")
_NONSTANDARD_SUFFIXES = (*_TIER_SUFFIXES, "_batches")
_THRESHOLD_PREFIXES = tuple(
    f"{name}_above_"
    for name in (
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
    )
)
_TTL_WRITE_KEYS = {
    "1hr": "cache_creation_input_token_cost_above_1hr",
    "12hr": "cache_creation_input_token_cost_above_12hr",
}
_STANDARD_OUTPUT = re.compile(r"^output_cost_per_(reasoning_)?token(_above_[0-9.]+k?_tokens)?$")
# Fireworks bills cache hits at half the input price unless a model says otherwise.
_FIREWORKS_CACHE_READ_RATIO = Decimal("0.5")


@dataclass(frozen=True, slots=True)
class Rates:
    """The per-token prices (USD) that apply to one call."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    reasoning: Decimal
    cache_write_ttl: Mapping[str, Decimal] = field(default_factory=dict)


def threshold_of(key: str) -> float:
    """The prompt size in ``..._above_128k_tokens`` style keys (128000.0)."""
    tail = key.rsplit("_above_", 1)[1].split("_tokens")[0]
    return float(tail.replace("k", "")) * (1000 if "k" in tail else 1)


class ModelPrices:
    """Exact prices of one table entry, with the rules LiteLLM prices that provider by."""

    __slots__ = (
        "_numbers",
        "_plain",
        "_threshold_keys",
        "inclusive",
        "off_peak",
        "provider",
        "provider_multipliers",
        "tiered",
    )

    def __init__(self, entry: Mapping[str, Any]) -> None:
        self.provider = str(entry.get("litellm_provider") or "")
        numbers: dict[str, Decimal] = {}
        for key, value in entry.items():
            rate = _parse(value) if "cost" in key else None
            if rate is not None:
                numbers[key] = rate
        if self.provider == "fireworks_ai" and "cache_read_input_token_cost" not in numbers:
            base = numbers.get("input_cost_per_token")
            if base is not None:
                numbers["cache_read_input_token_cost"] = base * _FIREWORKS_CACHE_READ_RATIO
        self._numbers = numbers
        self.inclusive = self.provider == "xai"
        self.tiered = _compile_tiered(entry.get("tiered_pricing"))
        off_peak = entry.get("off_peak_pricing")
        self.off_peak: Mapping[str, Any] | None = (
            off_peak if isinstance(off_peak, Mapping) else None
        )
        if self.off_peak is not None and self.provider == "fireworks_ai":
            self.off_peak = _fireworks_off_peak(self.off_peak, entry, numbers)
        specific = entry.get("provider_specific_entry")
        self.provider_multipliers: Mapping[str, Any] = (
            specific if isinstance(specific, Mapping) else {}
        )
        self._threshold_keys: dict[str | None, tuple[tuple[float, str], ...]] = {}
        self._plain: dict[str | None, Rates] = {}

    # -- single prices -------------------------------------------------------------------------
    def number(self, key: str) -> Decimal | None:
        """The price under ``key`` exactly, or None."""
        return self._numbers.get(key)

    def lookup(self, key: str, default: Decimal | None = None) -> Decimal | None:
        """``key``'s price; a service-tier key missing from the table falls back to the standard
        key without the suffix, then to ``default``."""
        value = self._numbers.get(key)
        if value is not None:
            return value
        for suffix in _TIER_SUFFIXES:
            if suffix in key:
                value = self._numbers.get(key.replace(suffix, ""))
                return default if value is None else value
        return default

    def highest_output_rate(self) -> Decimal:
        """The most one output token can cost at the standard service tier: the output and
        reasoning prices of every prompt-size threshold and tier range (image output prices for
        models with no text output price)."""
        rates = [
            rate for key, rate in self._numbers.items() if _STANDARD_OUTPUT.match(key) is not None
        ]
        for _, _, tier in self.tiered:
            rates += [
                tier[k]
                for k in ("output_cost_per_token", "output_cost_per_reasoning_token")
                if k in tier
            ]
        if not rates:
            image = self._numbers.get("output_cost_per_image_token")
            return image if image is not None else ZERO
        return max(rates)

    # -- the rates of one call -----------------------------------------------------------------
    def rates(self, prompt_tokens: int, service_tier: str | None, now: float) -> Rates:
        """The rates for a call of ``prompt_tokens`` in ``service_tier`` at UNIX time ``now``."""
        if not self.tiered and self.off_peak is None:
            plain = self._plain.get(service_tier)
            if plain is not None and not self._crosses_threshold(prompt_tokens, service_tier):
                return plain
            rates = self._resolve(prompt_tokens, service_tier, None)
            if not self._crosses_threshold(prompt_tokens, service_tier):
                self._plain[service_tier] = rates
            return rates
        off_peak = (
            self.off_peak if self.off_peak is not None and is_off_peak(self.off_peak, now) else None
        )
        return self._resolve(prompt_tokens, service_tier, off_peak)

    def _thresholds(self, service_tier: str | None) -> tuple[tuple[float, str], ...]:
        cached = self._threshold_keys.get(service_tier)
        if cached is not None:
            return cached
        wanted = tier_suffix(service_tier)
        keys = [
            key
            for key in self._numbers
            if key.startswith(_THRESHOLD_PREFIXES)
            and "_tokens" in key
            and (not key.endswith(_NONSTANDARD_SUFFIXES) or (wanted and key.endswith(wanted)))
        ]
        found = tuple(sorted(((threshold_of(key), key) for key in keys), key=lambda t: t[0]))
        self._threshold_keys[service_tier] = found
        return found

    def _exceeds(self, prompt_tokens: int, threshold: float) -> bool:
        return prompt_tokens > threshold or (self.inclusive and prompt_tokens == threshold)

    def _crosses_threshold(self, prompt_tokens: int, service_tier: str | None) -> bool:
        return any(self._exceeds(prompt_tokens, t) for t, _ in self._thresholds(service_tier))

    def _resolve(
        self, prompt_tokens: int, service_tier: str | None, off_peak: Mapping[str, Any] | None
    ) -> Rates:
        tier = _select_tier(self.tiered, prompt_tokens)
        if tier is not None:
            return self._tiered_rates(tier, off_peak)
        suffix = tier_suffix(service_tier)
        get = self.lookup
        input_rate = get("input_cost_per_token" + suffix, ZERO) or ZERO
        output_rate = get("output_cost_per_token" + suffix, ZERO) or ZERO
        if output_rate == 0:
            image_rate = get("output_cost_per_image_token")
            if image_rate is not None:
                output_rate = image_rate
        write_rate = get("cache_creation_input_token_cost" + suffix)
        read_rate = get("cache_read_input_token_cost" + suffix)
        ttl_keys = {ttl: key + suffix for ttl, key in _TTL_WRITE_KEYS.items()}
        for threshold, key in self._thresholds(service_tier):
            if not self._exceeds(prompt_tokens, threshold):
                continue
            above = key.rsplit("_above_", 1)[1].split("_tokens")[0]
            tail = f"_above_{above}_tokens{suffix}"
            input_rate = get("input_cost_per_token" + tail, input_rate) or ZERO
            output_rate = get("output_cost_per_token" + tail, output_rate) or ZERO
            write_rate = get("cache_creation_input_token_cost" + tail, write_rate)
            ttl_keys = {
                ttl: (
                    f"{base}{tail}"
                    if self._numbers.get(f"{base}{tail}") is not None
                    else ttl_keys[ttl]
                )
                for ttl, base in _TTL_WRITE_KEYS.items()
            }
            read_rate = get("cache_read_input_token_cost" + tail, read_rate)

        standin = _off_peak_rate(off_peak, "input_cost_per_token", input_rate)
        read_rate = standin if read_rate is None else read_rate
        write_rate = standin if write_rate is None else write_rate
        if off_peak is not None:
            input_rate = _off_peak_rate(off_peak, "input_cost_per_token", input_rate)
            output_rate = _off_peak_rate(off_peak, "output_cost_per_token", output_rate)
            read_rate = _off_peak_rate(off_peak, "cache_read_input_token_cost", read_rate)
            write_rate = _off_peak_rate(off_peak, "cache_creation_input_token_cost", write_rate)
        ttl_rates = {}
        for ttl, key in ttl_keys.items():
            rate = get(key)
            ttl_rates[ttl] = write_rate if rate is None else rate
        return Rates(
            input=input_rate,
            output=output_rate,
            cache_read=read_rate,
            cache_write=write_rate,
            reasoning=self._reasoning_rate(service_tier, output_rate, off_peak),
            cache_write_ttl=ttl_rates,
        )

    def _reasoning_rate(
        self, service_tier: str | None, output_rate: Decimal, off_peak: Mapping[str, Any] | None
    ) -> Decimal:
        if off_peak is not None:
            rate = _parse(off_peak.get("output_cost_per_reasoning_token"))
            if rate is not None:
                return rate
        suffix = tier_suffix(service_tier)
        tiered = self._numbers.get("output_cost_per_reasoning_token" + suffix)
        if tiered is not None:
            return tiered
        if suffix and self._numbers.get("output_cost_per_token" + suffix) is not None:
            return output_rate
        standard = self._numbers.get("output_cost_per_reasoning_token")
        return output_rate if standard is None else standard

    def _tiered_rates(
        self, tier: Mapping[str, Decimal], off_peak: Mapping[str, Any] | None
    ) -> Rates:
        input_rate = tier["input_cost_per_token"]
        output_rate = tier.get("output_cost_per_token")
        if output_rate is None:
            output_rate = self._numbers.get("output_cost_per_token") or ZERO
        read_rate = tier.get("cache_read_input_token_cost", input_rate)
        write_rate = tier.get("cache_creation_input_token_cost", input_rate)
        if off_peak is not None:
            input_rate = _off_peak_rate(off_peak, "input_cost_per_token", input_rate)
            output_rate = _off_peak_rate(off_peak, "output_cost_per_token", output_rate)
            read_rate = _off_peak_rate(off_peak, "cache_read_input_token_cost", read_rate)
            write_rate = _off_peak_rate(off_peak, "cache_creation_input_token_cost", write_rate)
        reasoning = _parse(off_peak.get("output_cost_per_reasoning_token")) if off_peak else None
        if reasoning is None:
            if "output_cost_per_reasoning_token" in tier:
                reasoning = tier["output_cost_per_reasoning_token"]
            elif "output_cost_per_token" in tier:
                reasoning = tier["output_cost_per_token"]
            else:
                reasoning = self._reasoning_rate(None, output_rate, None)
        return Rates(
            input=input_rate,
            output=output_rate,
            cache_read=read_rate,
            cache_write=write_rate,
            reasoning=reasoning,
            cache_write_ttl={
                ttl: tier.get(key, write_rate) for ttl, key in _TTL_WRITE_KEYS.items()
            },
        )

    # -- prices of other token kinds -----------------------------------------------------------
    def modality(
        self, key: str, service_tier: str | None, prompt_tokens: int, fallback: Decimal
    ) -> Decimal:
        """The price of an audio / image / video prompt token: the modality's own price (raised
        by any ``_above_Nk_tokens`` tier the prompt crosses), else ``fallback``."""
        suffix = tier_suffix(service_tier)
        cost_key = key + suffix
        base = key
        best: tuple[float, str] | None = None
        for candidate in self._numbers:
            if candidate.startswith(base + "_above_") and candidate.endswith(
                ("_tokens", "_tokens" + suffix)
            ):
                threshold = threshold_of(candidate)
                if self._exceeds(prompt_tokens, threshold) and (
                    best is None or threshold > best[0]
                ):
                    best = (threshold, candidate)
        if best is not None:
            cost_key = best[1].removesuffix(suffix) + suffix
        standard = cost_key.removesuffix(suffix) if suffix else cost_key
        if self._numbers.get(cost_key) is None and self._numbers.get(standard) is None:
            return fallback
        return self.lookup(cost_key, ZERO) or ZERO


def tier_suffix(service_tier: str | None) -> str:
    """The key suffix (``_priority``...) that prices ``service_tier``; empty for standard."""
    if service_tier is None:
        return ""
    name = SERVICE_TIERS.get(service_tier.lower())
    return "" if name is None else "_" + name


def _parse(value: object) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return to_money(float(value) if isinstance(value, str) else value)
    except (ValueError, ArithmeticError):
        return None


def _off_peak_rate(off_peak: Mapping[str, Any] | None, key: str, standard: Decimal) -> Decimal:
    if off_peak is None:
        return standard
    rate = _parse(off_peak.get(key))
    return standard if rate is None else rate


def _compile_tiered(value: object) -> tuple[tuple[float, float, dict[str, Decimal]], ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    tiers = []
    for tier in value:
        if not isinstance(tier, Mapping):
            continue
        bounds = tier.get("range")
        if not isinstance(bounds, Sequence) or isinstance(bounds, str) or len(bounds) != 2:
            continue
        try:
            start, end = float(bounds[0]), float(bounds[1])
        except (TypeError, ValueError):
            continue
        prices = {key: rate for key, raw in tier.items() if (rate := _parse(raw)) is not None}
        tiers.append((start, end, prices))
    tiers.sort(key=lambda t: t[0])
    return tuple(tiers)


def _select_tier(
    tiers: tuple[tuple[float, float, dict[str, Decimal]], ...], prompt_tokens: int
) -> dict[str, Decimal] | None:
    """The tier whose ``(start, end]`` holds the prompt size (the last one above every range)."""
    if not tiers or prompt_tokens <= 0:
        return None
    chosen = next((prices for start, end, prices in tiers if start < prompt_tokens <= end), None)
    if chosen is None:
        chosen = tiers[-1][2]
    return chosen if "input_cost_per_token" in chosen else None


def _fireworks_off_peak(
    off_peak: Mapping[str, Any], entry: Mapping[str, Any], numbers: Mapping[str, Decimal]
) -> Mapping[str, Any]:
    if (
        "cache_read_input_token_cost" in off_peak
        or entry.get("cache_read_input_token_cost") is not None
    ):
        return off_peak
    input_rate = _parse(off_peak.get("input_cost_per_token"))
    read = (
        input_rate * _FIREWORKS_CACHE_READ_RATIO
        if input_rate is not None
        else numbers.get("cache_read_input_token_cost")
    )
    return {**off_peak, "cache_read_input_token_cost": read}


def compile_prices(entry: Mapping[str, Any]) -> ModelPrices:
    """Exact prices from a LiteLLM-format entry."""
    return ModelPrices(entry)
