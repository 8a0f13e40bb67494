"""Token counts as OpenAI's tokenizers produce them (tiktoken), working without a network.

The encodings come from :mod:`budget_manager.encodings` (verified copies shipped in the package);
tiktoken is imported only when something is first counted.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .encodings import get_encoding

# -- which encoding a model uses ----------------------------------------------------------------
_O200K_PREFIXES = (
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "o1",
    "o3",
    "o4",
    "chatgpt-4o",
    "gpt-oss",
)


@functools.lru_cache(maxsize=1024)
def encoding_name_for(model: str) -> str:
    """``o200k_base`` for the GPT-4o / 4.1 / 5 / o-series families, ``cl100k_base`` otherwise.

    Models of other vendors have their own tokenizers; cl100k_base is the approximation used for
    them (as LiteLLM does), typically within a few percent of the provider's own count.
    """
    base = model.rsplit("/", 1)[-1].lower()
    if base.startswith("ft:"):
        base = base[3:]
    return "o200k_base" if base.startswith(_O200K_PREFIXES) else "cl100k_base"


# -- counting -------------------------------------------------------------------------------------
def count_text(model: str, text: str) -> int:
    """Tokens in plain ``text`` (special-token markers count as ordinary text)."""
    if not text:
        return 0
    if len(text) <= MEMO_MAX_CHARS:
        return _memo_count(encoding_name_for(model), text)
    return _count(encoding_name_for(model), text)


# Prompts repeat (system prompts, templates, roles), so counts of short texts are memoized: at
# most MEMO_ENTRIES texts of up to MEMO_MAX_CHARS characters each.
MEMO_ENTRIES = 2048
MEMO_MAX_CHARS = 2048


def _count(encoding: str, text: str) -> int:
    return len(get_encoding(encoding).encode_ordinary(text))


_memo_count = functools.lru_cache(maxsize=MEMO_ENTRIES)(_count)


# OpenAI's published rule: every message costs 3 tokens of framing plus its fields, a name 1 more,
# and every reply is primed with 3 tokens.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# Image inputs by OpenAI's tile rule when detail is "low" (a flat 85) or when the size is unknown
# (assumed 1024x1024 at "high"/"auto": 4 tiles of 170 plus 85).
IMAGE_LOW_TOKENS = 85
IMAGE_TILE_TOKENS = 170


def count_messages(model: str, messages: Iterable[Mapping[str, Any]]) -> int:
    """Prompt tokens of chat ``messages`` as OpenAI bills them, framing included."""
    total = REPLY_PRIMING
    for message in messages:
        if not isinstance(message, Mapping):
            raise TypeError(f"each message must be a dict, got {type(message).__name__}")
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "name":
                total += TOKENS_PER_NAME
            total += _count_value(model, key, value)
    return total


def _count_value(model: str, key: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return count_text(model, value)
    if key == "content" and isinstance(value, list):
        return sum(_count_part(model, part) for part in value)
    if key == "tool_calls" and isinstance(value, list):
        return sum(_count_tool_call(model, call) for call in value)
    if key == "function_call" and isinstance(value, Mapping):
        return _count_function(model, value)
    return 0


def _count_part(model: str, part: Any) -> int:
    if isinstance(part, str):
        return count_text(model, part)
    if not isinstance(part, Mapping):
        return 0
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text"):
        return count_text(model, part.get("text") or "")
    if kind in ("image_url", "input_image", "image"):
        return image_tokens(part)
    return 0


def image_tokens(part: Mapping[str, Any]) -> int:
    """Tokens of one image part: 85 at ``detail="low"``, else OpenAI's tile rule.

    The size comes from ``width``/``height`` on the part when given; without it the image is
    assumed to be 1024x1024 (765 tokens), since the library never downloads images.
    """
    spec = part.get("image_url") if isinstance(part.get("image_url"), Mapping) else part
    detail = (spec.get("detail") if isinstance(spec, Mapping) else None) or part.get("detail")
    if detail == "low":
        return IMAGE_LOW_TOKENS
    width = _dimension(part, spec, "width") or 1024
    height = _dimension(part, spec, "height") or 1024
    return IMAGE_LOW_TOKENS + IMAGE_TILE_TOKENS * _tiles(width, height)


def _dimension(part: Mapping[str, Any], spec: Any, key: str) -> int | None:
    for source in (part, spec):
        if isinstance(source, Mapping) and isinstance(source.get(key), int) and source[key] > 0:
            return int(source[key])
    return None


def _tiles(width: int, height: int) -> int:
    # Fit in 2048x2048, then scale the shortest side down to 768, then count 512px tiles.
    scale = min(1.0, 2048 / max(width, height))
    scale *= min(1.0, 768 / (min(width, height) * scale))
    return math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def _count_tool_call(model: str, call: Any) -> int:
    if not isinstance(call, Mapping):
        return 0
    function = call.get("function")
    return _count_function(model, function) if isinstance(function, Mapping) else 0


def _count_function(model: str, function: Mapping[str, Any]) -> int:
    name, arguments = function.get("name"), function.get("arguments")
    total = count_text(model, name) if isinstance(name, str) else 0
    if isinstance(arguments, str):
        total += count_text(model, arguments)
    return total


def token_counter(
    model: str = "",
    text: str | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
) -> int:
    """Tokens of ``messages`` (chat framing included) or of plain ``text`` for ``model``."""
    if messages is not None:
        return count_messages(model, messages)
    if text is not None:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return count_text(model, text)
    raise ValueError("token_counter needs text= or messages=")
