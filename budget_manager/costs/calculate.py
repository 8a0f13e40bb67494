"""The arithmetic of a call's cost: usage x rates, exactly, by the rules each provider bills by."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal, localcontext

from ..money import MONEY_CONTEXT, ZERO, to_money
from .prices import ModelPrices, tier_suffix
from .usage import Usage

# Providers whose bills do not depend on a service tier the response names.
_TIERLESS_PROVIDERS = frozenset(
    [
        "fireworks_ai",
        "deepseek",
        "tencent",
        "xai",
        "lemonade",
        "dashscope",
        "qwencloud",
        "qwen_ai_platform",
    ]
)


def usage_cost(
    prices: ModelPrices, usage: Usage, now: float | None = None
) -> tuple[Decimal, Decimal]:
    """``(prompt cost, completion cost)`` in USD of ``usage`` at ``prices`` at UNIX time ``now``.

    Cached prompt tokens bill at the cache-read price and cache writes at the cache-write price
    (per lifetime where reported), both the input price where the model has none; reasoning,
    audio and image tokens at their own prices where the model has them; a prompt above a
    ``_above_Nk_tokens`` threshold or inside a ``tiered_pricing`` range bills wholly at that
    tier; service tiers and off-peak windows choose their own prices.
    """
    with localcontext(MONEY_CONTEXT):  # exact whatever the caller's decimal settings
        return _usage_cost(prices, usage, time.time() if now is None else now)


def _usage_cost(prices: ModelPrices, usage: Usage, moment: float) -> tuple[Decimal, Decimal]:
    if prices.provider == "perplexity":
        return _perplexity(prices, usage, moment)
    if prices.provider.startswith("vertex_ai") and _has_128k_prices(prices):
        return _vertex_128k(prices, usage)
    if prices.provider in _TIERLESS_PROVIDERS and usage.service_tier is not None:
        usage = replace(usage, service_tier=None)
    if prices.provider == "xai":
        usage = _xai_completion(usage)
    prompt, completion = _generic(prices, usage, moment)
    if prices.provider == "anthropic" and prices.provider_multipliers:
        factor = _anthropic_multiplier(prices, usage)
        if factor != 1:
            prompt, completion = prompt * factor, completion * factor
    return prompt, completion


def _generic(prices: ModelPrices, usage: Usage, now: float) -> tuple[Decimal, Decimal]:
    tier = usage.service_tier
    rates = prices.rates(usage.prompt_tokens, tier, now)
    hit, written = usage.cache_read_tokens, usage.cache_write_tokens

    # -- prompt ---------------------------------------------------------------------------------
    text = usage.prompt_text_tokens
    audio, image = usage.prompt_audio_tokens, usage.prompt_image_tokens
    if (hit or written) and text + hit + audio + written + image > usage.prompt_tokens:
        # the per-kind counts overlap the cached ones: bill each token once
        uncached = max(usage.prompt_tokens - hit - written, 0)
        audio = min(audio, uncached)
        image = min(image, uncached - audio)
        text = uncached - audio - image
    elif text == 0:
        text = max(usage.prompt_tokens - hit - audio - written - image, 0)
    prompt = rates.input * text if text else ZERO
    if hit:
        prompt += rates.cache_read * hit
    if audio:
        rate = prices.modality("input_cost_per_audio_token", tier, usage.prompt_tokens, rates.input)
        prompt += rate * audio
    if image:
        prompt += prices.modality("input_cost_per_image_token", tier, 0, rates.input) * image
    if written or usage.cache_write_by_ttl is not None:
        by_ttl = usage.cache_write_by_ttl
        if by_ttl is None:
            prompt += rates.cache_write * written
        else:
            attributed = sum(by_ttl.values())
            prompt += rates.cache_write * max(written - attributed, 0)
            for ttl, count in by_ttl.items():
                if count:
                    prompt += rates.cache_write_ttl.get(ttl, rates.cache_write) * count

    # -- completion -----------------------------------------------------------------------------
    reasoning = usage.reasoning_tokens
    audio_out, image_out = usage.completion_audio_tokens, usage.completion_image_tokens
    text_out = usage.completion_text_tokens
    if text_out == 0:
        if reasoning or audio_out or image_out:
            text_out = max(0, usage.completion_tokens - reasoning - audio_out - image_out)
        else:
            out = usage.completion_tokens
            return prompt, (rates.output * out if out else ZERO)
    completion = rates.output * text_out
    if audio_out:
        audio_rate = prices.number("output_cost_per_audio_token")
        completion += (rates.output if audio_rate is None else audio_rate) * audio_out
    if reasoning:
        completion += rates.reasoning * reasoning
    if image_out:
        image_rate = prices.lookup("output_cost_per_image_token" + tier_suffix(tier))
        completion += (rates.output if image_rate is None else image_rate) * image_out
    return prompt, completion


def _xai_completion(usage: Usage) -> Usage:
    # xAI bills reasoning as output; when total_tokens shows the reasoning was reported outside
    # completion_tokens, add it in. No per-kind output breakdown applies.
    completion = usage.completion_tokens
    if usage.total_tokens != usage.prompt_tokens + usage.completion_tokens:
        completion += usage.reasoning_tokens
    return replace(
        usage,
        completion_tokens=completion,
        reasoning_tokens=0,
        completion_text_tokens=0,
        completion_audio_tokens=0,
        completion_image_tokens=0,
    )


def _perplexity(prices: ModelPrices, usage: Usage, now: float) -> tuple[Decimal, Decimal]:
    # Perplexity's prices are flat: no thresholds, no cache writes, reasoning at its own price.
    rates = prices.rates(0, None, now)
    read_price = prices.number("cache_read_input_token_cost")
    read_rate = rates.input if read_price is None else rates.cache_read
    cached = min(usage.prompt_tokens, usage.cache_read_tokens)
    prompt = rates.input * (usage.prompt_tokens - cached) + read_rate * cached
    reasoning_price = prices.number("output_cost_per_reasoning_token")
    if usage.reasoning_tokens and reasoning_price is not None:
        plain = max(0, usage.completion_tokens - usage.reasoning_tokens)
        completion = rates.output * plain + reasoning_price * usage.reasoning_tokens
    else:
        completion = rates.output * usage.completion_tokens
    return prompt, completion


def _has_128k_prices(prices: ModelPrices) -> bool:
    return (
        prices.number("input_cost_per_token_above_128k_tokens") is not None
        or prices.number("output_cost_per_token_above_128k_tokens") is not None
    )


def _vertex_128k(prices: ModelPrices, usage: Usage) -> tuple[Decimal, Decimal]:
    # Vertex AI's older Gemini models: every prompt token at one price chosen by the prompt's size,
    # every output token at one price chosen by the output's size.
    above_in = prices.number("input_cost_per_token_above_128k_tokens")
    above_out = prices.number("output_cost_per_token_above_128k_tokens")
    input_rate = (
        above_in
        if usage.prompt_tokens > 128_000 and above_in is not None
        else prices.number("input_cost_per_token") or ZERO
    )
    output_rate = (
        above_out
        if usage.completion_tokens > 128_000 and above_out is not None
        else prices.number("output_cost_per_token") or ZERO
    )
    return input_rate * usage.prompt_tokens, output_rate * usage.completion_tokens


def _anthropic_multiplier(prices: ModelPrices, usage: Usage) -> Decimal:
    factor = Decimal(1)
    table = prices.provider_multipliers
    if usage.speed == "fast" and "fast" in table:
        factor *= to_money(table["fast"], "provider_specific_entry.fast")
    geo = (usage.inference_geo or "").lower()
    if geo and geo not in ("global", "not_available") and geo in table:
        factor *= to_money(table[geo], f"provider_specific_entry.{geo}")
    return factor
