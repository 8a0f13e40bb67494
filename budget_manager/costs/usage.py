"""Token usage read from the response shapes of the providers and SDKs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError, MissingUsageError


@dataclass(slots=True)
class Usage:
    """Tokens of one call. ``prompt_tokens`` counts every prompt token, cached ones included."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


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


def usage_of(response: Any) -> Usage:
    """The usage a response reports; MissingUsageError if it reports none."""
    usage = field(response, "usage")
    if usage is None:
        raise MissingUsageError(
            "the response has no usage, so its cost is unknown; pass the model and text instead "
            "(update_cost(user, model=..., input_text=..., output_text=...))"
        )
    if isinstance(usage, (str, bytes, int, float)) or (
        not isinstance(usage, Mapping) and not hasattr(usage, "__dict__")
    ):
        raise MissingUsageError(f"the response's usage is not an object: {usage!r}")
    if field(usage, "prompt_tokens") is not None or field(usage, "completion_tokens") is not None:
        return _chat_usage(usage)
    if field(usage, "input_tokens") is not None or field(usage, "output_tokens") is not None:
        return _input_output_usage(usage)
    raise MissingUsageError(f"the response's usage reports no token counts: {usage!r}")


def _chat_usage(usage: Any) -> Usage:
    # OpenAI chat completions (and LiteLLM's ModelResponse, which may add Anthropic's cache keys).
    prompt_details = field(usage, "prompt_tokens_details")
    completion_details = field(usage, "completion_tokens_details")
    cache_read = _tokens(prompt_details, "cached_tokens") or _tokens(
        usage, "cache_read_input_tokens"
    )
    return Usage(
        prompt_tokens=_tokens(usage, "prompt_tokens"),
        completion_tokens=_tokens(usage, "completion_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=_tokens(usage, "cache_creation_input_tokens"),
        reasoning_tokens=_tokens(completion_details, "reasoning_tokens"),
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
        )
    # Anthropic Messages: input_tokens excludes cache reads and writes.
    cache_read = _tokens(usage, "cache_read_input_tokens")
    cache_write = _tokens(usage, "cache_creation_input_tokens")
    return Usage(
        prompt_tokens=_tokens(usage, "input_tokens") + cache_read + cache_write,
        completion_tokens=_tokens(usage, "output_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def model_of(response: Any) -> str | None:
    model = field(response, "model")
    return model if isinstance(model, str) and model else None
