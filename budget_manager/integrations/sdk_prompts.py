"""The prompt of an SDK request as chat messages, so its worst case can be counted and priced.

Chat Completions requests already carry chat messages. A Responses API request carries
``instructions`` and ``input`` (a string or a list of items); an Anthropic Messages request carries
``system`` and ``messages`` whose content may be a list of blocks. Each becomes the chat messages
that hold the same text. Tool definitions, tool calls and blocks of unknown kinds are counted as
their JSON text, so an estimate errs on the side of holding more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

Message = dict[str, Any]


def chat_prompt(request: Mapping[str, Any]) -> list[Message]:
    """The prompt of a ``chat.completions.create`` request."""
    messages = [_plain(message) for message in _listed(request.get("messages"), "messages")]
    return messages + _tools(request)


def responses_prompt(request: Mapping[str, Any]) -> list[Message]:
    """The prompt of a ``responses.create`` request."""
    messages: list[Message] = []
    instructions = request.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    given = request.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif given is not None:
        messages.extend(_response_item(_plain(item)) for item in _listed(given, "input"))
    return messages + _tools(request)


def anthropic_prompt(request: Mapping[str, Any]) -> list[Message]:
    """The prompt of a ``messages.create`` request (Anthropic)."""
    messages: list[Message] = []
    system = request.get("system")
    if system:
        messages.append({"role": "system", "content": _blocks(system)})
    for message in _listed(request.get("messages"), "messages"):
        message = _plain(message)
        messages.append(
            {"role": message.get("role", "user"), "content": _blocks(message.get("content"))}
        )
    return messages + _tools(request)


def _response_item(item: Any) -> Message:
    if not isinstance(item, Mapping):
        return {"role": "user", "content": _json(item)}
    if "role" in item and item.get("type", "message") == "message":
        return {"role": item["role"], "content": _blocks(item.get("content"))}
    if item.get("type") == "function_call_output":
        return {"role": "tool", "content": _text(item.get("output"))}
    return {"role": "assistant", "content": _json(item)}


def _blocks(content: Any) -> Any:
    """Message content as the library's token counter reads it: a string, or a list of parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    parts: list[Any] = []
    for block in content:
        block = _plain(block)
        kind = block.get("type") if isinstance(block, Mapping) else None
        if isinstance(block, str):
            parts.append({"type": "text", "text": block})
        elif kind in ("text", "input_text", "output_text"):
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind in ("image_url", "input_image", "image"):
            parts.append(block)
        elif kind == "tool_result":
            parts.append({"type": "text", "text": _text(block.get("content"))})
        else:  # tool_use, thinking, documents, ...: their JSON text
            parts.append({"type": "text", "text": _json(block)})
    return parts


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(
            part.get("text", "") if isinstance(part, Mapping) else _json(part)
            for part in map(_plain, value)
        )
    return _json(value)


def _tools(request: Mapping[str, Any]) -> list[Message]:
    tools = request.get("tools") or request.get("functions")
    if not tools:
        return []
    return [{"role": "system", "content": _json([_plain(tool) for tool in tools])}]


def _listed(value: Any, what: str) -> list[Any]:
    if isinstance(value, (str, bytes, Mapping)) or value is None:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"{what} must be a list, got {type(value).__name__}")
    return list(value)


def _plain(value: Any) -> Any:
    """SDK objects passed back in a request (``response.content``) as plain data."""
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else value


def _json(value: Any) -> str:
    return json.dumps(_plain(value), default=str, sort_keys=True)
