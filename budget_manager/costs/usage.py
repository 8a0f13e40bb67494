"""Token usage read from the response shapes of the providers and SDKs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

    def counts(self) -> dict[str, int]:
        """The token counts a history event keeps: those that are not zero."""
        found = {
            "prompt": self.prompt_tokens,
            "completion": self.completion_tokens,
            "cache_read": self.cache_read_tokens,
            "cache_write": self.cache_write_tokens,
            "reasoning": self.reasoning_tokens,
        }
        return {name: count for name, count in found.items() if count}


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for mappings, ``obj.name`` for objects (SDK models), else None."""
    if obj is None:
        return None
    if type(obj) is dict or isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _getter(obj: Any) -> Callable[[str], Any]:
    if obj is None:
        return _nothing
    if type(obj) is dict or isinstance(obj, Mapping):
        return obj.get
    return lambda name: getattr(obj, name, None)


def _nothing(name: str) -> None:
    return None


def _tokens(value: Any, name: str) -> int:
    if type(value) is int and value >= 0:
        return value
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"usage.{name} must be a number of tokens, got {value!r}")
    if value < 0 or value != int(value):
        raise InvalidInputError(f"usage.{name} must be a whole number >= 0, got {value!r}")
    return int(value)


def _text(value: Any) -> str | None:
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
    get = _getter(usage)
    if get("prompt_tokens") is not None or get("completion_tokens") is not None:
        read = _chat_usage(get)
    elif get("input_tokens") is not None or get("output_tokens") is not None:
        read = _input_output_usage(get)
    else:
        raise MissingUsageError(f"the response's usage reports no token counts: {usage!r}")
    if service_tier is not None or get("service_tier") is not None:
        read.service_tier = served_tier(service_tier, get("service_tier"))
    read.inference_geo = _text(get("inference_geo"))
    read.speed = _text(get("speed"))
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
    get = _getter(details)
    return {
        ttl: _tokens(get(f"ephemeral_{name}_input_tokens"), f"ephemeral_{name}_input_tokens")
        for ttl, name in (("5m", "5m"), ("30m", "30m"), ("1hr", "1h"), ("12hr", "12h"))
    }


def _responses_ttl_counts(details: Any) -> dict[str, int] | None:
    # OpenAI Responses splits cache writes into ttl_30m_tokens and ttl_12h_tokens.
    get = _getter(details)
    short, long = get("ttl_30m_tokens"), get("ttl_12h_tokens")
    if not isinstance(short, int) and not isinstance(long, int):
        return None
    return {
        "30m": _tokens(short, "ttl_30m_tokens"),
        "12hr": _tokens(long, "ttl_12h_tokens"),
    }


def _reports_something(details: Any) -> bool:
    # The common OpenAI shape is a dict of zeros ({"cached_tokens": 0, "audio_tokens": 0}).
    return type(details) is not dict or any(details.values())


def _read_prompt_details(usage: Usage, details: Any) -> None:
    get = _getter(details)
    usage.cache_read_tokens = _tokens(get("cached_tokens"), "cached_tokens")
    usage.cache_write_tokens = _tokens(get("cache_write_tokens"), "cache_write_tokens") or _tokens(
        get("cache_creation_tokens"), "cache_creation_tokens"
    )
    usage.cache_write_by_ttl = _ttl_counts(
        get("cache_creation_token_details")
    ) or _responses_ttl_counts(get("cache_write_tokens_details"))
    usage.prompt_text_tokens = _tokens(get("text_tokens"), "text_tokens")
    usage.prompt_audio_tokens = _tokens(get("audio_tokens"), "audio_tokens")
    usage.prompt_image_tokens = _tokens(get("image_tokens"), "image_tokens")


def _read_completion_details(usage: Usage, details: Any) -> None:
    get = _getter(details)
    reasoning = _tokens(get("reasoning_tokens"), "reasoning_tokens")
    text = _tokens(get("text_tokens"), "text_tokens")
    audio = _tokens(get("audio_tokens"), "audio_tokens")
    image = _tokens(get("image_tokens"), "image_tokens")
    if text:
        # Some providers count reasoning inside text_tokens too; bill it once.
        reported = text + reasoning + audio + image
        text -= min(reasoning, text, max(reported - usage.completion_tokens, 0))
    usage.reasoning_tokens = reasoning
    usage.completion_text_tokens = text
    usage.completion_audio_tokens = audio
    usage.completion_image_tokens = image


def _chat_usage(get: Callable[[str], Any]) -> Usage:
    # OpenAI chat completions, and LiteLLM's ModelResponse, which may carry Anthropic's cache keys
    # (cache_read_input_tokens / cache_creation_input_tokens, counted inside prompt_tokens) or
    # DeepSeek's prompt_cache_hit_tokens.
    usage = Usage(
        prompt_tokens=_tokens(get("prompt_tokens"), "prompt_tokens"),
        completion_tokens=_tokens(get("completion_tokens"), "completion_tokens"),
    )
    total = get("total_tokens")
    if type(total) is int:
        usage.total_tokens = total
    prompt_details = get("prompt_tokens_details")
    if prompt_details is not None and _reports_something(prompt_details):
        _read_prompt_details(usage, prompt_details)
    for key in ("prompt_cache_hit_tokens", "cache_read_input_tokens"):
        value = get(key)
        if isinstance(value, int):
            usage.cache_read_tokens = _tokens(value, key)
    value = get("cache_creation_input_tokens")
    if isinstance(value, int):
        usage.cache_write_tokens = _tokens(value, "cache_creation_input_tokens")
    completion_details = get("completion_tokens_details")
    if completion_details is not None and _reports_something(completion_details):
        _read_completion_details(usage, completion_details)
    if not usage.reasoning_tokens:
        usage.reasoning_tokens = _tokens(get("reasoning_tokens"), "reasoning_tokens")
    return usage


def _input_output_usage(get: Callable[[str], Any]) -> Usage:
    input_tokens = _tokens(get("input_tokens"), "input_tokens")
    output_tokens = _tokens(get("output_tokens"), "output_tokens")
    input_details, output_details = get("input_tokens_details"), get("output_tokens_details")
    anthropic = input_details is None and any(
        get(key) is not None
        for key in ("cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation")
    )
    if not anthropic and (
        input_details is not None or output_details is not None or get("total_tokens")
    ):
        # OpenAI Responses API: input_tokens already includes the cached ones.
        usage = Usage(prompt_tokens=input_tokens, completion_tokens=output_tokens)
        if input_details is not None:
            _read_prompt_details(usage, input_details)
        if output_details is not None:
            _read_completion_details(usage, output_details)
        return usage
    # Anthropic Messages: input_tokens excludes cache reads and writes.
    cache_read = _tokens(get("cache_read_input_tokens"), "cache_read_input_tokens")
    cache_write = _tokens(get("cache_creation_input_tokens"), "cache_creation_input_tokens")
    prompt_tokens = input_tokens + cache_read + cache_write
    # Thinking is billed inside output_tokens; output_tokens_details only breaks it out.
    thinking = _getter(output_details)("thinking_tokens")
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_by_ttl=_ttl_counts(get("cache_creation")),
        reasoning_tokens=_tokens(thinking, "thinking_tokens"),
        total_tokens=prompt_tokens + output_tokens,
    )


def model_of(response: Any) -> str | None:
    """The model a response names, if any."""
    model = field(response, "model")
    return model if isinstance(model, str) and model else None
