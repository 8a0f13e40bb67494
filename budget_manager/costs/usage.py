"""Token usage read from the response shapes of the providers and SDKs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError, MissingUsageError

TTLS = ("5m", "30m", "1hr", "12hr")


@dataclass(slots=True)
class Usage:
    """Tokens of one call. ``prompt_tokens`` counts every prompt token, cached ones included;
    ``completion_tokens`` every output token, reasoning included."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    # cache writes by lifetime ("5m", "30m", "1hr", "12hr"), when the provider reports them
    cache_write_by_ttl: dict[str, int] | None = None
    reasoning_tokens: int = 0
    prompt_text_tokens: int = 0  # 0: not reported
    prompt_audio_tokens: int = 0
    prompt_image_tokens: int = 0
    completion_text_tokens: int = 0  # 0: not reported
    completion_audio_tokens: int = 0
    completion_image_tokens: int = 0
    total_tokens: int | None = None
    service_tier: str | None = None
    inference_geo: str | None = None
    speed: str | None = None


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for mappings, ``obj.name`` for objects (SDK models), else None."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _tokens(obj: Any, name: str) -> int:
    value = field(obj, name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"usage.{name} must be a number of tokens, got {value!r}")
    if value < 0 or value != int(value):
        raise InvalidInputError(f"usage.{name} must be a whole number >= 0, got {value!r}")
    return int(value)


def _text(obj: Any, name: str) -> str | None:
    value = field(obj, name)
    return value if isinstance(value, str) and value else None


def usage_of(response: Any) -> Usage:
    """The usage a response reports; MissingUsageError if it reports none."""
    usage = field(response, "usage")
    if usage is None:
        raise MissingUsageError(
            "the response has no usage, so its cost is unknown; pass the model and text instead "
            "(update_cost(user, model=..., input_text=..., output_text=...))"
        )
    return read_usage(usage, field(response, "service_tier"))


def read_usage(usage: Any, service_tier: Any = None) -> Usage:
    """Usage from a usage object or dict of any supported shape."""
    if isinstance(usage, (str, bytes, int, float)) or (
        not isinstance(usage, Mapping) and not hasattr(usage, "__dict__")
    ):
        raise MissingUsageError(f"the response's usage is not an object: {usage!r}")
    if field(usage, "prompt_tokens") is not None or field(usage, "completion_tokens") is not None:
        read = _chat_usage(usage)
    elif field(usage, "input_tokens") is not None or field(usage, "output_tokens") is not None:
        read = _input_output_usage(usage)
    else:
        raise MissingUsageError(f"the response's usage reports no token counts: {usage!r}")
    read.service_tier = served_tier(service_tier, field(usage, "service_tier"))
    read.inference_geo = _text(usage, "inference_geo")
    read.speed = _text(usage, "speed")
    return read


def served_tier(response_tier: Any, usage_tier: Any) -> str | None:
    """The service tier a call was billed in: the response's, else the usage's."""
    tier = response_tier if isinstance(response_tier, str) else usage_tier
    if not isinstance(tier, str) or tier.lower() in ("auto", "default", "standard"):
        return None
    return tier.lower()


def _ttl_counts(details: Any) -> dict[str, int] | None:
    if details is None:
        return None
    return {
        "5m": _tokens(details, "ephemeral_5m_input_tokens"),
        "30m": _tokens(details, "ephemeral_30m_input_tokens"),
        "1hr": _tokens(details, "ephemeral_1h_input_tokens"),
        "12hr": _tokens(details, "ephemeral_12h_input_tokens"),
    }


def _chat_usage(usage: Any) -> Usage:
    # OpenAI chat completions, and LiteLLM's ModelResponse, which may carry Anthropic's cache keys
    # (cache_read_input_tokens / cache_creation_input_tokens, counted inside prompt_tokens) or
    # DeepSeek's prompt_cache_hit_tokens.
    prompt = field(usage, "prompt_tokens_details")
    completion = field(usage, "completion_tokens_details")
    cache_read = _tokens(prompt, "cached_tokens")
    if isinstance(field(usage, "prompt_cache_hit_tokens"), int):
        cache_read = _tokens(usage, "prompt_cache_hit_tokens")
    if isinstance(field(usage, "cache_read_input_tokens"), int):
        cache_read = _tokens(usage, "cache_read_input_tokens")
    cache_write = _tokens(prompt, "cache_write_tokens") or _tokens(prompt, "cache_creation_tokens")
    if isinstance(field(usage, "cache_creation_input_tokens"), int):
        cache_write = _tokens(usage, "cache_creation_input_tokens")
    reasoning = _tokens(completion, "reasoning_tokens") or _tokens(usage, "reasoning_tokens")
    completion_tokens = _tokens(usage, "completion_tokens")
    text_out = _tokens(completion, "text_tokens")
    audio_out = _tokens(completion, "audio_tokens")
    image_out = _tokens(completion, "image_tokens")
    if text_out:
        # Some providers count reasoning inside text_tokens too; bill it once.
        reported = text_out + reasoning + audio_out + image_out
        text_out -= min(reasoning, text_out, max(reported - completion_tokens, 0))
    elif reasoning and completion is None:
        text_out = max(0, completion_tokens - reasoning)
    total = field(usage, "total_tokens")
    return Usage(
        prompt_tokens=_tokens(usage, "prompt_tokens"),
        completion_tokens=completion_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_by_ttl=_ttl_counts(field(prompt, "cache_creation_token_details")),
        reasoning_tokens=reasoning,
        prompt_text_tokens=_tokens(prompt, "text_tokens"),
        prompt_audio_tokens=_tokens(prompt, "audio_tokens"),
        prompt_image_tokens=_tokens(prompt, "image_tokens"),
        completion_text_tokens=text_out,
        completion_audio_tokens=audio_out,
        completion_image_tokens=image_out,
        total_tokens=total if isinstance(total, int) and not isinstance(total, bool) else None,
    )


def _input_output_usage(usage: Any) -> Usage:
    input_details = field(usage, "input_tokens_details")
    output_details = field(usage, "output_tokens_details")
    if input_details is not None or output_details is not None or field(usage, "total_tokens"):
        # OpenAI Responses API: input_tokens already includes the cached ones.
        return Usage(
            prompt_tokens=_tokens(usage, "input_tokens"),
            completion_tokens=_tokens(usage, "output_tokens"),
            cache_read_tokens=_tokens(input_details, "cached_tokens"),
            reasoning_tokens=_tokens(output_details, "reasoning_tokens"),
            prompt_audio_tokens=_tokens(input_details, "audio_tokens"),
            prompt_image_tokens=_tokens(input_details, "image_tokens"),
        )
    # Anthropic Messages: input_tokens excludes cache reads and writes.
    cache_read = _tokens(usage, "cache_read_input_tokens")
    cache_write = _tokens(usage, "cache_creation_input_tokens")
    prompt_tokens = _tokens(usage, "input_tokens") + cache_read + cache_write
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=_tokens(usage, "output_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_by_ttl=_ttl_counts(field(usage, "cache_creation")),
        total_tokens=prompt_tokens + _tokens(usage, "output_tokens"),
    )


def model_of(response: Any) -> str | None:
    """The model a response names, if any."""
    model = field(response, "model")
    return model if isinstance(model, str) and model else None
