"""The calls the wrap tests make, each endpoint in each form, sync and async: every one returns
the cost of the usage the server reported (priced independently of the wrapper)."""

from __future__ import annotations

from typing import Any

import anthropic
import openai

from budget_manager import completion_cost, model_cost

MESSAGES = [{"role": "user", "content": "Hey, how's it going?"}]
ENDPOINTS = ["chat", "responses", "messages"]
FORMS = ["create", "stream", "helper"]
MODELS = {"chat": "gpt-4o-mini", "responses": "gpt-4o-mini", "messages": "claude-haiku-4-5"}


def openai_client(stub: Any, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub.url, api_key="test", max_retries=0, **options)


def async_openai_client(stub: Any, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stub.url, api_key="test", max_retries=0, **options)


def anthropic_client(stub: Any, **options: Any) -> anthropic.Anthropic:
    base = stub.url.removesuffix("/v1")
    return anthropic.Anthropic(base_url=base, api_key="test", max_retries=0, **options)


def async_anthropic_client(stub: Any, **options: Any) -> anthropic.AsyncAnthropic:
    base = stub.url.removesuffix("/v1")
    return anthropic.AsyncAnthropic(base_url=base, api_key="test", max_retries=0, **options)


def client_for(endpoint: str, stub: Any, is_async: bool = False) -> Any:
    if endpoint == "messages":
        return (async_anthropic_client if is_async else anthropic_client)(stub)
    return (async_openai_client if is_async else openai_client)(stub)


def request(endpoint: str, limit: Any = 50, **extra: Any) -> dict[str, Any]:
    """The keyword arguments of one request to ``endpoint``."""
    model = MODELS[endpoint]
    if endpoint == "chat":
        return {"model": model, "messages": MESSAGES, "max_tokens": limit, **extra}
    if endpoint == "responses":
        return {
            "model": model,
            "input": MESSAGES[0]["content"],
            "max_output_tokens": limit,
            **extra,
        }
    return {"model": model, "messages": MESSAGES, "max_tokens": limit, **extra}


def resource(client: Any, endpoint: str) -> Any:
    return {
        "chat": lambda: client.chat.completions,
        "responses": lambda: client.responses,
        "messages": lambda: client.messages,
    }[endpoint]()


def call(client: Any, endpoint: str, form: str, **kwargs: Any) -> float:
    """One call in ``form``, read to the end; the cost of the usage it reported."""
    target = resource(client, endpoint)
    body = request(endpoint, **kwargs)
    if form == "create":
        return completion_cost(target.create(**body))
    if form == "stream":
        return completion_cost(list(target.create(**body, stream=True)))
    with target.stream(**body) as stream:
        return completion_cost(_final(stream, endpoint))


async def acall(client: Any, endpoint: str, form: str, **kwargs: Any) -> float:
    """:func:`call` on an asyncio client."""
    target = resource(client, endpoint)
    body = request(endpoint, **kwargs)
    if form == "create":
        return completion_cost(await target.create(**body))
    if form == "stream":
        return completion_cost([chunk async for chunk in await target.create(**body, stream=True)])
    async with target.stream(**body) as stream:
        return completion_cost(await _final(stream, endpoint))


def _final(stream: Any, endpoint: str) -> Any:
    if endpoint == "chat":
        return stream.get_final_completion()
    if endpoint == "responses":
        return stream.get_final_response()
    return stream.get_final_message()


def price(model: str, key: str) -> float:
    return float(model_cost[model][key])  # type: ignore[arg-type]
