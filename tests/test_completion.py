import socket

import pytest
import requests

import budget_manager
from budget_manager import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BudgetExceededError,
    MalformedResponseError,
    UnknownModelError,
    completion,
    completion_cost,
    token_counter,
)

MESSAGES = [{"role": "user", "content": "Hey, how's it going"}]


def served(stub) -> int:
    return requests.get(stub.url.replace("/v1", "/stats"), timeout=5).json()["requests"]


def test_completion_returns_a_response_usable_as_dict_and_object(stub_url):
    response = completion(model="gpt-4o", messages=MESSAGES)
    assert response["choices"][0]["message"]["content"] == response.choices[0].message.content
    assert response.usage.prompt_tokens == token_counter("gpt-4o", messages=MESSAGES)
    assert response["usage"]["completion_tokens"] == response.usage.completion_tokens > 0
    assert response.model == "gpt-4o"


def test_each_call_adds_its_cost_to_the_global_total(stub_url):
    first = completion(model="gpt-4", messages=MESSAGES)
    assert budget_manager._current_cost == pytest.approx(completion_cost(first), rel=1e-12)
    second = completion(model="gpt-4o-mini", messages=MESSAGES)
    assert budget_manager._current_cost == pytest.approx(
        completion_cost(first) + completion_cost(second), rel=1e-12
    )


def test_the_seeds_quickstart_cap(stub, stub_url):
    budget_manager.max_budget = 0.001
    completion(model="gpt-4", messages=MESSAGES)
    assert budget_manager._current_cost > 0.001
    before = served(stub)
    with pytest.raises(BudgetExceededError) as info:
        completion(model="gpt-4", messages=MESSAGES)
    assert served(stub) == before  # no request left
    error = info.value
    assert error.current_cost == budget_manager._current_cost and error.max_budget == 0.001
    assert str(budget_manager._current_cost) in str(error) and "0.001" in str(error)


def test_the_cap_is_on_current_cost_exceeding_it(stub_url):
    budget_manager.max_budget = 0.0
    completion(model="gpt-4o-mini", messages=MESSAGES)  # 0 > 0 is false: the first call goes
    with pytest.raises(BudgetExceededError):
        completion(model="gpt-4o-mini", messages=MESSAGES)


def test_resetting_the_global_total_by_assignment_is_honoured(stub_url):
    completion(model="gpt-4o", messages=MESSAGES)
    budget_manager._current_cost = 0
    response = completion(model="gpt-4o", messages=MESSAGES)
    assert budget_manager._current_cost == pytest.approx(completion_cost(response), rel=1e-12)


def test_an_unpriced_model_is_not_sent(stub, stub_url):
    before = served(stub)
    with pytest.raises(UnknownModelError, match="register_model"):
        completion(model="my-unpriced-model", messages=MESSAGES)
    assert served(stub) == before and budget_manager._current_cost == 0


def test_api_base_and_key_arguments(stub):
    response = completion(model="gpt-4o", messages=MESSAGES, api_base=stub.url, api_key="sk-test")
    assert response.choices[0].message.role == "assistant"


def test_http_errors_raise_with_the_status(stub_url):
    with pytest.raises(APIError) as info:
        completion(model="gpt-4o", messages=MESSAGES, extra_headers={"X-Stub-Status": "503"})
    assert info.value.status_code == 503 and "503" in str(info.value)
    assert budget_manager._current_cost == 0


def test_timeouts_raise(stub_url):
    with pytest.raises(APITimeoutError):
        completion(
            model="gpt-4o", messages=MESSAGES, timeout=0.2, extra_headers={"X-Stub-Delay": "1"}
        )


def test_malformed_bodies_raise(stub_url):
    with pytest.raises(MalformedResponseError):
        completion(model="gpt-4o", messages=MESSAGES, extra_headers={"X-Stub-Body": "garbage"})


def test_unreachable_endpoints_raise():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(APIConnectionError, match="cannot reach"):
        completion(model="gpt-4o", messages=MESSAGES, api_base=f"http://127.0.0.1:{port}/v1")


def test_a_response_without_usage_is_priced_by_counting(stub_url):
    response = completion(model="gpt-4o", messages=MESSAGES, extra_headers={"X-Stub-Usage": "none"})
    assert response.usage.prompt_tokens == token_counter("gpt-4o", messages=MESSAGES)
    assert budget_manager._current_cost > 0
    assert budget_manager._current_cost == pytest.approx(completion_cost(response))


def test_a_response_naming_another_model_is_priced_as_that_model(stub_url):
    response = completion(
        model="gpt-4o", messages=MESSAGES, extra_headers={"X-Stub-Model": "gpt-4o-2024-08-06"}
    )
    assert budget_manager._current_cost == pytest.approx(completion_cost(response))
    unknown = completion(
        model="gpt-4o", messages=MESSAGES, extra_headers={"X-Stub-Model": "gpt-4o-some-alias"}
    )
    assert completion_cost(unknown, model="gpt-4o") > 0  # falls back to the requested model


@pytest.mark.parametrize("messages", ["hello", [{"content": "no role"}], None])
def test_bad_messages_are_rejected_before_sending(stub, stub_url, messages):
    before = served(stub)
    with pytest.raises(ValueError):
        completion(model="gpt-4o", messages=messages)
    assert served(stub) == before


def test_a_stream_yields_chunks_and_charges_the_reported_usage_at_the_end(stub_url):
    plain = completion(model="gpt-4o", messages=MESSAGES)
    budget_manager._current_cost = 0.0
    stream = completion(model="gpt-4o", messages=MESSAGES, stream=True)
    assert budget_manager._current_cost == 0.0  # nothing charged before the call has ended
    pieces = [chunk.choices[0].delta.get("content") for chunk in stream if chunk.choices]
    assert "".join(p for p in pieces if p) == plain.choices[0].message.content
    assert stream.cost == pytest.approx(completion_cost(plain), rel=1e-12)
    assert budget_manager._current_cost == pytest.approx(completion_cost(plain), rel=1e-12)
    stream.close()  # closing again charges nothing more
    assert budget_manager._current_cost == pytest.approx(completion_cost(plain), rel=1e-12)


def test_a_stream_without_usage_is_priced_from_its_tokens(stub_url):
    with completion(
        model="gpt-4o", messages=MESSAGES, stream=True, extra_headers={"X-Stub-Usage": "none"}
    ) as stream:
        text = "".join(c.choices[0].delta.get("content") or "" for c in stream if c.choices)
    expected = completion_cost(model="gpt-4o", messages=MESSAGES, completion=text)
    assert stream.cost == pytest.approx(expected, rel=1e-12)
    assert budget_manager._current_cost == pytest.approx(expected, rel=1e-12)


def test_a_stream_left_early_still_charges_what_arrived(stub_url):
    stream = completion(
        model="gpt-4o", messages=MESSAGES, stream=True, extra_headers={"X-Stub-Usage": "none"}
    )
    first = next(stream)
    stream.close()
    expected = completion_cost(
        model="gpt-4o", messages=MESSAGES, completion=first.choices[0].delta.content
    )
    assert budget_manager._current_cost == pytest.approx(expected, rel=1e-12)


def test_a_stream_is_refused_over_the_cap(stub, stub_url):
    budget_manager.max_budget = 0.0
    budget_manager._current_cost = 0.01
    before = served(stub)
    with pytest.raises(BudgetExceededError):
        completion(model="gpt-4o", messages=MESSAGES, stream=True)
    assert served(stub) == before
