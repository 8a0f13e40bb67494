"""wrap(): the real OpenAI and Anthropic SDKs, budgeted, against the local provider server."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest
from wrap_helpers import (
    ENDPOINTS,
    FORMS,
    MESSAGES,
    MODELS,
    acall,
    anthropic_client,
    async_openai_client,
    call,
    client_for,
    openai_client,
    price,
    request,
    resource,
)

from budget_manager import (
    AsyncBudgetManager,
    BudgetExceededError,
    BudgetManager,
    InvalidInputError,
    completion_cost,
    wrap,
)
from budget_manager.costs.worst_case import worst_case
from budget_manager.integrations.sdk_prompts import anthropic_prompt, chat_prompt, responses_prompt


@pytest.fixture
def bm() -> BudgetManager:
    manager = BudgetManager("wrap", store="memory://")
    manager.create_budget(total_budget=1, user="ann")
    return manager


async def _async_manager(budget: float = 1) -> AsyncBudgetManager:
    manager = AsyncBudgetManager("wrap", store="memory://")
    await manager.create_budget(total_budget=budget, user="ann")
    return manager


# -- each endpoint, each form -------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_sync_call_settles_what_the_server_reported(stub, bm, endpoint, form):
    client = wrap(client_for(endpoint, stub), bm, user="ann")
    reported = call(client, endpoint, form)
    assert reported > 0
    assert bm.get_current_cost("ann") == pytest.approx(reported, rel=1e-12)
    assert bm.get_holds("ann") == []


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_async_call_settles_what_the_server_reported(stub, endpoint, form):
    async def main() -> None:
        manager = await _async_manager()
        client = wrap(client_for(endpoint, stub, is_async=True), manager, user="ann")
        reported = await acall(client, endpoint, form)
        assert reported > 0
        assert await manager.get_current_cost("ann") == pytest.approx(reported, rel=1e-12)
        assert await manager.get_holds("ann") == []

    asyncio.run(main())


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_hold_is_taken_before_sending_and_settled_after(stub, bm, endpoint):
    client = wrap(client_for(endpoint, stub), bm, user="ann")
    stream = resource(client, endpoint).create(**request(endpoint), stream=True)
    [hold] = bm.get_holds("ann")
    worst = worst_case(MODELS[endpoint], MESSAGES).cost(50)
    assert hold["amount"] == pytest.approx(float(worst), rel=0.2)
    for _ in stream:
        pass
    assert bm.get_holds("ann") == [] and bm.get_current_cost("ann") > 0


# -- cached, reasoning and cache-write tokens ---------------------------------------------------
def test_openai_cached_and_reasoning_tokens_are_priced_as_reported(stub, bm):
    client = wrap(openai_client(stub), bm, user="ann")
    model = "o4-mini"
    headers = {"X-Stub-Cached": "6", "X-Stub-Reasoning": "20"}
    response = client.chat.completions.create(
        model=model, messages=MESSAGES, max_completion_tokens=200, extra_headers=headers
    )
    usage = response.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 6
    expected = (
        (usage.prompt_tokens - 6) * price(model, "input_cost_per_token")
        + 6 * price(model, "cache_read_input_token_cost")
        + usage.completion_tokens * price(model, "output_cost_per_token")
    )
    assert bm.get_current_cost("ann") == pytest.approx(expected, rel=1e-9)
    spent = bm.get_current_cost("ann")
    responded = client.responses.create(
        model=model, input="Hey", max_output_tokens=200, extra_headers=headers
    )
    assert responded.usage is not None
    assert responded.usage.output_tokens_details.reasoning_tokens == 20
    assert responded.usage.input_tokens_details.cached_tokens == 6
    expected = (
        (responded.usage.input_tokens - 6) * price(model, "input_cost_per_token")
        + 6 * price(model, "cache_read_input_token_cost")
        + responded.usage.output_tokens * price(model, "output_cost_per_token")
    )
    assert bm.get_current_cost("ann") - spent == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("streamed", [False, True])
def test_anthropic_cache_reads_writes_and_thinking_are_priced_as_reported(stub, bm, streamed):
    client = wrap(anthropic_client(stub), bm, user="ann")
    model = MODELS["messages"]
    headers = {"X-Stub-Cached": "4", "X-Stub-Cache-Write": "5", "X-Stub-Reasoning": "12"}
    body = {"model": model, "messages": MESSAGES, "max_tokens": 300, "extra_headers": headers}
    if streamed:
        with client.messages.stream(**body) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**body)
    usage = message.usage
    assert usage.cache_read_input_tokens == 4 and usage.cache_creation_input_tokens == 5
    assert usage.output_tokens_details is not None
    assert usage.output_tokens_details.thinking_tokens == 12
    expected = (
        usage.input_tokens * price(model, "input_cost_per_token")
        + 4 * price(model, "cache_read_input_token_cost")
        + 5 * price(model, "cache_creation_input_token_cost")
        + usage.output_tokens * price(model, "output_cost_per_token")
    )
    assert bm.get_current_cost("ann") == pytest.approx(expected, rel=1e-9)


# -- streams closed early -----------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_stream_closed_early_settles_what_it_carried(stub, bm, endpoint):
    client = wrap(client_for(endpoint, stub), bm, user="ann")
    stream = resource(client, endpoint).create(**request(endpoint), stream=True)
    seen = [next(stream) for _ in range(5)]
    stream.close()
    assert bm.get_holds("ann") == []
    spent = bm.get_current_cost("ann")
    assert (
        0 < spent < completion_cost(model=MODELS[endpoint], messages=MESSAGES, completion="x" * 400)
    )
    assert len(seen) == 5


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_helper_stream_left_early_settles(stub, bm, endpoint):
    client = wrap(client_for(endpoint, stub), bm, user="ann")
    with resource(client, endpoint).stream(**request(endpoint)) as stream:
        next(iter(stream))
        assert len(bm.get_holds("ann")) == 1
    assert bm.get_holds("ann") == [] and bm.get_current_cost("ann") > 0


def test_an_async_stream_closed_early_settles(stub):
    async def main() -> None:
        manager = await _async_manager()
        client = wrap(async_openai_client(stub), manager, user="ann")
        stream = await client.chat.completions.create(**request("chat"), stream=True)
        async for _ in stream:
            break
        await stream.close()
        assert await manager.get_holds("ann") == []
        assert await manager.get_current_cost("ann") > 0

    asyncio.run(main())


# -- errors, users, budgets ---------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_provider_error_releases_the_hold(stub, bm, endpoint, form):
    client = wrap(client_for(endpoint, stub), bm, user="ann")
    with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)):
        call(client, endpoint, form, extra_headers={"X-Stub-Status": "500"})
    assert bm.get_holds("ann") == [] and bm.get_current_cost("ann") == 0


def test_an_async_provider_error_releases_the_hold(stub):
    async def main() -> None:
        manager = await _async_manager()
        client = wrap(client_for("messages", stub, is_async=True), manager, user="ann")
        with pytest.raises(anthropic.APIStatusError):
            await acall(client, "messages", "helper", extra_headers={"X-Stub-Status": "503"})
        assert await manager.get_holds("ann") == []
        assert await manager.get_current_cost("ann") == 0

    asyncio.run(main())


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_call_with_no_user_is_refused_before_sending(stub, bm, endpoint):
    client = wrap(client_for(endpoint, stub), bm)
    before = stub.requests
    for form in FORMS:
        with pytest.raises(InvalidInputError, match="no user"):
            call(client, endpoint, form)
    assert stub.requests == before and bm.get_holds("ann") == []


def test_the_user_comes_from_the_request_when_wrap_names_none(stub, bm):
    bm.create_budget(total_budget=1, user="bob")
    bm.create_budget(total_budget=1, user="cid")
    bm.create_budget(total_budget=1, user="dee")
    openai_wrapped = wrap(openai_client(stub), bm)
    openai_wrapped.chat.completions.create(**request("chat"), user="bob")
    openai_wrapped.responses.create(**request("responses"), safety_identifier="cid")
    wrap(anthropic_client(stub), bm).messages.create(
        **request("messages"), metadata={"user_id": "dee"}
    )
    assert all(bm.get_current_cost(user) > 0 for user in ("bob", "cid", "dee"))
    assert bm.get_current_cost("ann") == 0


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_over_budget_raises_and_sends_nothing(stub, endpoint, form):
    bm = BudgetManager("wrap", store="memory://")
    bm.create_budget(total_budget=0.00001, user="ann")
    client = wrap(client_for(endpoint, stub), bm, user="ann")
    before = stub.requests
    with pytest.raises(BudgetExceededError):
        call(client, endpoint, form, limit=5000)
    assert stub.requests == before
    assert bm.get_holds("ann") == [] and bm.get_current_cost("ann") == 0


def test_no_limit_holds_the_models_output_limit(stub):
    bm = BudgetManager("wrap", store="memory://")
    worst = worst_case("gpt-4o-mini", MESSAGES)
    assert worst.max_output_tokens is not None
    bm.create_budget(total_budget=float(worst.cost(worst.max_output_tokens)) * 0.9, user="ann")
    client = wrap(openai_client(stub), bm, user="ann")
    before = stub.requests
    with pytest.raises(BudgetExceededError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=100)
    assert stub.requests == before + 1


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_fit_sends_the_limit_the_budget_buys(stub, endpoint):
    prompt_of = {"chat": chat_prompt, "responses": responses_prompt, "messages": anthropic_prompt}
    worst = worst_case(MODELS[endpoint], prompt_of[endpoint](request(endpoint)))
    budget = float(worst.cost(7))  # the prompt and 7 output tokens
    bm = BudgetManager("wrap", store="memory://")
    bm.create_budget(total_budget=budget, user="ann")
    client = wrap(client_for(endpoint, stub), bm, user="ann")
    response = resource(client, endpoint).create(**request(endpoint, limit="fit"))
    output = {
        "chat": lambda: response.usage.completion_tokens,
        "responses": lambda: response.usage.output_tokens,
        "messages": lambda: response.usage.output_tokens,
    }[endpoint]()
    assert 0 < output <= 7  # cut at the limit sent (at a word's end)
    assert bm.get_current_cost("ann") == pytest.approx(completion_cost(response), rel=1e-12)
    assert bm.get_current_cost("ann") <= budget


def test_fit_with_nothing_left_sends_nothing(stub, bm):
    bm.create_budget(total_budget=1e-9, user="poor")
    client = wrap(openai_client(stub), bm, user="poor")
    before = stub.requests
    with pytest.raises(BudgetExceededError):
        client.chat.completions.create(**request("chat", limit="fit"))
    assert stub.requests == before


# -- the client otherwise ----------------------------------------------------------------------
def test_the_wrapped_client_is_the_client(stub, bm):
    inner = openai_client(stub)
    client = wrap(inner, bm, user="ann")
    assert isinstance(client, openai.OpenAI)
    assert isinstance(client.chat.completions, type(inner.chat.completions))
    assert client.models is inner.models and client.base_url == inner.base_url
    copied = client.with_options(timeout=5)
    assert isinstance(copied, openai.OpenAI)
    copied.chat.completions.create(**request("chat"))
    assert bm.get_current_cost("ann") > 0  # the copy is budgeted too
    stream = client.chat.completions.create(**request("chat"), stream=True)
    assert isinstance(stream, openai.Stream)
    stream.close()


def test_wrap_refuses_a_manager_of_the_wrong_kind_and_other_objects(stub, bm):
    with pytest.raises(TypeError, match="AsyncBudgetManager"):
        wrap(async_openai_client(stub), bm)
    with pytest.raises(TypeError, match="BudgetManager"):
        wrap(anthropic_client(stub), AsyncBudgetManager("x", store="memory://"))
    with pytest.raises(TypeError, match=r"openai\.OpenAI"):
        wrap(object(), bm)


@pytest.mark.parametrize("limit", [-1, 2.5, "lots"])
def test_a_bad_limit_is_refused_before_sending(stub, bm, limit: Any):
    client = wrap(openai_client(stub), bm, user="ann")
    before = stub.requests
    with pytest.raises(InvalidInputError):
        client.chat.completions.create(**request("chat", limit=limit))
    assert stub.requests == before and bm.get_holds("ann") == []


def test_a_stream_dropped_unclosed_still_settles(stub, bm):
    client = wrap(openai_client(stub), bm, user="ann")
    stream = client.chat.completions.create(**request("chat"), stream=True)
    next(stream)
    del stream
    assert bm.get_holds("ann") == [] and bm.get_current_cost("ann") > 0


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_parse_is_budgeted_like_create(stub, bm, endpoint):
    client = wrap(client_for(endpoint, stub), bm, user="ann")
    parsed = resource(client, endpoint).parse(**request(endpoint))
    assert bm.get_current_cost("ann") == pytest.approx(completion_cost(parsed), rel=1e-12)
    assert bm.get_holds("ann") == []


def test_a_parse_cut_at_its_limit_is_charged_not_released(stub, bm):
    from pydantic import BaseModel

    class Answer(BaseModel):
        text: str

    client = wrap(openai_client(stub), bm, user="ann")
    with pytest.raises(openai.LengthFinishReasonError) as raised:
        client.chat.completions.parse(**request("chat", limit=3), response_format=Answer)
    assert bm.get_current_cost("ann") == pytest.approx(
        completion_cost(raised.value.completion), rel=1e-12
    )
    assert bm.get_current_cost("ann") > 0 and bm.get_holds("ann") == []


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_async_over_budget_raises_and_sends_nothing(stub, endpoint, form):
    async def main() -> None:
        manager = await _async_manager(budget=0.00001)
        client = wrap(client_for(endpoint, stub, is_async=True), manager, user="ann")
        before = stub.requests
        with pytest.raises(BudgetExceededError):
            await acall(client, endpoint, form, limit=5000)
        assert stub.requests == before
        assert await manager.get_holds("ann") == []

    asyncio.run(main())


def test_async_fit_sends_the_limit_the_budget_buys(stub):
    async def main() -> None:
        worst = worst_case(MODELS["messages"], anthropic_prompt(request("messages")))
        manager = await _async_manager(budget=float(worst.cost(6)))
        client = wrap(client_for("messages", stub, is_async=True), manager, user="ann")
        message = await client.messages.create(**request("messages", limit="fit"))
        assert 0 < message.usage.output_tokens <= 6 and message.stop_reason == "max_tokens"
        assert await manager.get_current_cost("ann") == pytest.approx(completion_cost(message))

    asyncio.run(main())


def test_wrap_refuses_a_user_that_is_no_name(stub, bm):
    with pytest.raises(InvalidInputError):
        wrap(openai_client(stub), bm, user=42)  # type: ignore[arg-type]
