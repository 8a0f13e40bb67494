"""Which SDK calls are budgeted, and what a request says about its budget: whose it is, the model,
the prompt and the output limit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import costs
from ..errors import InvalidInputError
from ..manager_flows import MaxTokens
from . import sdk_prompts

Prompt = Callable[[Mapping[str, Any]], list[dict[str, Any]]]
UserOf = Callable[[Mapping[str, Any]], Any]


def _openai_user(request: Mapping[str, Any]) -> Any:
    return request.get("user") or request.get("safety_identifier")


def _anthropic_user(request: Mapping[str, Any]) -> Any:
    metadata = request.get("metadata")
    return metadata.get("user_id") if isinstance(metadata, Mapping) else None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One budgeted resource (``client.chat.completions``): the request fields that carry its
    output limit (the first one given is used), how to read its prompt and its user, and whether
    a stream must ask for usage (Chat Completions reports none unless asked, and the wrapper
    asks, as :func:`budget_manager.completion` does)."""

    path: tuple[str, ...]
    limits: tuple[str, ...]
    prompt: Prompt
    user: UserOf
    ask_stream_usage: bool = False
    #: the resource method the SDK's ``.stream(...)`` helper opens its raw stream with
    stream_opener: str = "create"


OPENAI = (
    Endpoint(
        ("chat", "completions"),
        ("max_completion_tokens", "max_tokens"),
        sdk_prompts.chat_prompt,
        _openai_user,
        ask_stream_usage=True,
    ),
    Endpoint(("responses",), ("max_output_tokens",), sdk_prompts.responses_prompt, _openai_user),
)
ANTHROPIC = (
    Endpoint(
        ("messages",),
        ("max_tokens",),
        sdk_prompts.anthropic_prompt,
        _anthropic_user,
        stream_opener="_post",
    ),
)


@dataclass(frozen=True, slots=True)
class ClientKind:
    """What ``wrap`` was given: which endpoints it budgets, and whether it is an asyncio client."""

    endpoints: tuple[Endpoint, ...]
    is_async: bool


def client_kind(client: object) -> ClientKind:
    """The kind of an SDK client; TypeError for anything ``wrap`` does not take."""
    module = type(client).__module__.split(".")[0]
    if module == "openai":
        import openai

        if isinstance(client, openai.AsyncOpenAI):
            return ClientKind(OPENAI, True)
        if isinstance(client, openai.OpenAI):
            return ClientKind(OPENAI, False)
    elif module == "anthropic":
        import anthropic

        if isinstance(client, anthropic.AsyncAnthropic):
            return ClientKind(ANTHROPIC, True)
        if isinstance(client, anthropic.Anthropic):
            return ClientKind(ANTHROPIC, False)
    raise TypeError(
        "wrap() takes an openai.OpenAI, openai.AsyncOpenAI, anthropic.Anthropic or "
        f"anthropic.AsyncAnthropic client, not {type(client).__module__}.{type(client).__name__}"
    )


@dataclass(slots=True)
class Call:
    """One budgeted request: whose budget, the model, its prompt as chat messages, the output
    limit to hold for (``"fit"``: what the budget buys; None: the model's), and the request."""

    endpoint: Endpoint
    user: str
    model: str
    prompt: list[dict[str, Any]]
    limit_field: str
    max_tokens: MaxTokens
    request: dict[str, Any]
    priced: bool

    def to_send(self, held_max_tokens: int | None, stream: bool) -> dict[str, Any]:
        """The request to send, with the output limit the hold settled on (for ``"fit"``) and,
        for a Chat Completions stream, a request for usage in its last chunk."""
        request = dict(self.request)
        if self.max_tokens == "fit":
            if held_max_tokens is None:  # no price to fit to: send no limit
                request.pop(self.limit_field, None)
            else:
                request[self.limit_field] = held_max_tokens
        if stream and self.endpoint.ask_stream_usage:
            options = request.get("stream_options")
            if not isinstance(options, Mapping) or "include_usage" not in options:
                request["stream_options"] = {**(options or {}), "include_usage": True}
        return request


def read_call(endpoint: Endpoint, request: dict[str, Any], default_user: str | None) -> Call:
    """What ``request`` asks of the budget; InvalidInputError (nothing sent) when it names no
    user or no model, or its output limit is not a whole number or ``"fit"``."""
    user = default_user if default_user is not None else endpoint.user(request)
    if not isinstance(user, str) or not user:
        raise InvalidInputError(
            f"no user to budget {'.'.join(endpoint.path)}.create for: pass wrap(..., user=...) "
            "or the request's own user field (OpenAI: user=, Anthropic: metadata={'user_id': ...})"
        )
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInputError("the request names no model, so its worst case is unknown")
    limit_field = next((k for k in endpoint.limits if request.get(k) is not None), None)
    max_tokens = request[limit_field] if limit_field is not None else None
    if max_tokens is not None and max_tokens != "fit" and type(max_tokens) is not int:
        raise InvalidInputError(
            f"{limit_field} must be a whole number or 'fit', got {max_tokens!r}"
        )
    for key in ("messages", "input"):  # an iterator would be spent by counting it
        value = request.get(key)
        if value is not None and not isinstance(value, (str, bytes, Mapping, list)):
            request[key] = list(value)
    prompt = endpoint.prompt(request)
    return Call(
        endpoint=endpoint,
        user=user,
        model=model,
        prompt=prompt,
        limit_field=limit_field or endpoint.limits[-1],
        max_tokens=max_tokens,
        request=request,
        priced=costs.has_price(model),
    )
