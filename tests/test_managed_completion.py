"""BudgetManager.completion (reserve, call, settle in one) and budget_manager.strict, against the
local OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import threading

import pytest

import budget_manager
from budget_manager import BudgetExceededError, BudgetManager, completion, completion_cost
from budget_manager.errors import APIError

MESSAGES = [{"role": "user", "content": "Hey, how's it going?"}]


def test_a_managed_call_holds_then_settles_what_the_response_reports(stub, stub_url):
    bm = BudgetManager("p")
    bm.create_budget(total_budget=1, user="ann")
    response = bm.completion(user="ann", model="gpt-4o", messages=MESSAGES, max_tokens=100)
    assert bm.get_current_cost("ann") == pytest.approx(completion_cost(response), rel=1e-12)
    assert bm.get_holds("ann") == []
    assert budget_manager._current_cost == pytest.approx(completion_cost(response), rel=1e-12)


def test_a_call_whose_worst_case_does_not_fit_is_not_sent(stub, stub_url):
    bm = BudgetManager("p")
    bm.create_budget(total_budget=0.0005, user="ann")
    before = stub.requests
    with pytest.raises(BudgetExceededError):
        bm.completion(user="ann", model="gpt-4o", messages=MESSAGES, max_tokens=1000)
    assert stub.requests == before and bm.get_current_cost("ann") == 0


def test_fit_sends_the_max_tokens_the_budget_buys(stub, stub_url):
    bm = BudgetManager("p")
    bm.create_budget(total_budget=0.0005, user="ann")
    hold = bm.reserve("ann", model="gpt-4o", messages=MESSAGES, max_tokens="fit")
    assert hold.max_tokens is not None and 1 <= hold.max_tokens < 50  # $10/M output tokens
    hold.release()
    response = bm.completion(user="ann", model="gpt-4o", messages=MESSAGES, max_tokens="fit")
    assert bm.get_current_cost("ann") == pytest.approx(completion_cost(response), rel=1e-12)


def test_a_failed_call_releases_its_hold(stub, stub_url):
    bm = BudgetManager("p")
    bm.create_budget(total_budget=1, user="ann")
    with pytest.raises(APIError):
        bm.completion(
            user="ann",
            model="gpt-4o",
            messages=MESSAGES,
            max_tokens=10,
            extra_headers={"X-Stub-Status": "503"},
        )
    assert bm.get_holds("ann") == [] and bm.get_current_cost("ann") == 0


def test_a_managed_stream_settles_when_it_ends_or_is_closed(stub, stub_url):
    bm = BudgetManager("p")
    bm.create_budget(total_budget=1, user="ann")
    stream = bm.completion(
        user="ann", model="gpt-4o", messages=MESSAGES, max_tokens=50, stream=True
    )
    assert len(bm.get_holds("ann")) == 1
    chunks = list(stream)
    assert chunks and bm.get_holds("ann") == []
    assert bm.get_current_cost("ann") == pytest.approx(stream.cost, rel=1e-12)
    early = bm.completion(user="ann", model="gpt-4o", messages=MESSAGES, max_tokens=50, stream=True)
    next(early)
    early.close()
    assert bm.get_holds("ann") == []
    assert bm.get_current_cost("ann") == pytest.approx(stream.cost + early.cost, rel=1e-12)


def test_strict_holds_the_worst_case_of_calls_in_flight(stub, stub_url, monkeypatch):
    one = completion_cost(completion(model="gpt-4o", messages=MESSAGES))
    monkeypatch.setattr(budget_manager, "_current_cost", 0.0)
    worst = float(budget_manager.costs.worst_case.worst_case("gpt-4o", MESSAGES).cost(40))
    budget_manager.max_budget = worst * 2.5  # room for two calls in flight, not three
    budget_manager.strict = True
    try:
        results: list[object] = []
        go = threading.Barrier(6)

        def call() -> None:
            go.wait()
            try:
                results.append(
                    completion(
                        model="gpt-4o",
                        messages=MESSAGES,
                        max_tokens=40,
                        extra_headers={"X-Stub-Delay": "0.5"},
                    )
                )
            except BudgetExceededError as exc:
                results.append(exc)

        threads = [threading.Thread(target=call) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent = [r for r in results if not isinstance(r, BudgetExceededError)]
        assert len(sent) == 2
        assert budget_manager._current_cost == pytest.approx(2 * one, rel=1e-9)
        budget_manager.register_model(
            {"no-limit-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}}
        )
        with pytest.raises(budget_manager.InvalidInputError, match="max_tokens"):
            completion(model="no-limit-model", messages=MESSAGES)
    finally:
        budget_manager.strict = False


def test_without_strict_the_seed_rule_stands(stub, stub_url):
    budget_manager.max_budget = 0.000001
    completion(model="gpt-4o", messages=MESSAGES)  # 0 spent so far: sent
    with pytest.raises(BudgetExceededError):
        completion(model="gpt-4o", messages=MESSAGES)


def test_managed_calls_keep_their_tokens_in_the_history(stub, stub_url, tmp_path):
    import asyncio

    from budget_manager import AsyncBudgetManager

    bm = BudgetManager("p", path=tmp_path / "b.json")
    bm.create_budget(total_budget=1, user="ann")
    response = bm.completion(user="ann", model="gpt-4o", messages=MESSAGES, max_tokens=20)
    stream = bm.completion(
        user="ann", model="gpt-4o", messages=MESSAGES, max_tokens=20, stream=True
    )
    streamed = "".join(c.choices[0].delta.get("content") or "" for c in stream if c.choices)

    async def through_asyncio() -> None:
        async with AsyncBudgetManager("p", path=tmp_path / "b.json") as abm:
            await abm.completion(user="ann", model="gpt-4o", messages=MESSAGES, max_tokens=20)

    asyncio.run(through_asyncio())
    settles = [e for e in bm.history(user="ann") if e.kind == "settle"]
    usage = response.usage
    expected = {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens}
    assert [e.tokens for e in settles] == [expected, expected, expected]
    assert streamed and float(sum(e.cost for e in settles)) == pytest.approx(
        bm.get_current_cost("ann"), rel=1e-12
    )
    with pytest.raises(budget_manager.InvalidInputError):
        bm.reserve("ann", amount=0.01).settle(cost=0.01, tokens={"prompt": -1})
