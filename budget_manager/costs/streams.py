"""Streamed responses: the chunks of one call folded into what pricing needs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .usage import field


def is_stream(response: Any) -> bool:
    """Whether ``response`` is a list or iterator of streamed chunks rather than one response."""
    if isinstance(response, (list, tuple)):
        return True
    return isinstance(response, Iterator) and not isinstance(response, Mapping)


@dataclass(slots=True)
class Folded:
    """One streamed call: its model, the last usage any chunk carried, and the text it produced."""

    model: str | None
    usage: Any
    service_tier: Any
    text: str


def fold(chunks: Iterable[Any]) -> Folded:
    """Fold chat-completion chunks (OpenAI / LiteLLM), Responses API events or Anthropic stream
    events: the last reported usage wins; text deltas accumulate for when none is reported."""
    model: str | None = None
    usage: Any = None
    tier: Any = None
    parts: list[str] = []
    for chunk in chunks:
        name = field(chunk, "model")
        if isinstance(name, str) and name:
            model = name
        inner = field(chunk, "response") or field(chunk, "message")  # Responses / Anthropic events
        if inner is not None and not isinstance(inner, str):
            name = field(inner, "model")
            if isinstance(name, str) and name:
                model = name
            if field(inner, "usage") is not None:
                usage = field(inner, "usage")
        if field(chunk, "usage") is not None:
            usage = _merge_anthropic_delta(usage, field(chunk, "usage"))
        if field(chunk, "service_tier") is not None:
            tier = field(chunk, "service_tier")
        for choice in field(chunk, "choices") or ():
            content = field(field(choice, "delta"), "content")
            if isinstance(content, str):
                parts.append(content)
        delta = field(chunk, "delta")
        text = field(delta, "text") if not isinstance(delta, str) else delta
        if isinstance(text, str) and field(chunk, "type") in (
            "content_block_delta",
            "response.output_text.delta",
        ):
            parts.append(text)
    return Folded(model=model, usage=usage, service_tier=tier, text="".join(parts))


def _merge_anthropic_delta(previous: Any, current: Any) -> Any:
    # Anthropic's message_delta reports only output_tokens; keep the input counts message_start
    # gave.
    if (
        previous is not None
        and field(current, "input_tokens") is None
        and field(current, "prompt_tokens") is None
        and field(current, "output_tokens") is not None
        and field(previous, "input_tokens") is not None
    ):
        merged = {
            key: field(previous, key)
            for key in (
                "input_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
                "cache_creation",
            )
        }
        merged["output_tokens"] = field(current, "output_tokens")
        merged["output_tokens_details"] = field(current, "output_tokens_details")
        return merged
    return current
