"""budget_manager.integrations.litellm: LiteLLM's own completion/acompletion against the local
OpenAI-compatible server (examples/openai_stub.py), budgeted by BudgetCallback and by the
enforcing wrappers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import litellm
import pytest
from contract import store_url
from litellm.integrations.custom_logger import CustomLogger

from budget_manager import (
    AsyncBudgetManager,
    BudgetExceededError,
    BudgetManager,
    InvalidInputError,
    UnknownModelError,
    completion_cost,
)
from budget_manager.costs.worst_case import worst_case
from budget_manager.integrations.litellm import BudgetCallback, acompletion, completion

MODEL = "openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Hey, how's it going?"}]


@pytest.fixture(autouse=True)
def _no_litellm_callbacks() -> Iterator[None]:
    """Each test registers its own callbacks; none outlives it."""
    litellm.logging_callback_manager._reset_all_callbacks()
    yield
    litellm.logging_callback_manager._reset_all_callbacks()


@pytest.fixture
def call(stub: Any) -> dict[str, Any]:
    """The keyword arguments of a LiteLLM call to the local server."""
    return {"model": MODEL, "messages": MESSAGES, "api_base": stub.url, "api_key": "sk-test"}


def served(stub: Any) -> int:
    """How many completions the server has answered (its GET /stats)."""
    with urllib.request.urlopen(stub.url.removesuffix("/v1") + "/stats") as reply:
        return int(json.load(reply)["requests"])


def cost_of(usage: Any) -> float:
    """This library's price of the usage a response reported."""
    return completion_cost({"model": "gpt-4o-mini", "usage": dict(usage)})


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """LiteLLM runs success callbacks on its logging thread / worker, after the call returns."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the callback did not run"
        time.sleep(0.02)


async def await_for(condition: Callable[[], Any], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "the callback did not run"
        await asyncio.sleep(0.02)


def settles(seconds: float = 0.5) -> None:
    """Give a second, wrong charge the time to arrive."""
    time.sleep(seconds)


class Sent(CustomLogger):
    """Records the optional parameters of every request LiteLLM sends."""

    def __init__(self) -> None:
        super().__init__()
        self.params: list[dict[str, Any]] = []

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        self.params.append(dict(kwargs.get("optional_params") or {}))


def manager(tmp_path: Path, budget: float = 1.0) -> BudgetManager:
    bm = BudgetManager("p", path=tmp_path / "budgets.json")
    bm.create_budget(budget, "alice")
    return bm


def test_importing_budget_manager_does_not_import_litellm() -> None:
    code = (
        "import sys, budget_manager, budget_manager.integrations; print('litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- BudgetCallback ------------------------------------------------------------------------------
def test_callback_charges_a_sync_call_once_at_our_price_of_the_reported_usage(call, tmp_path):
    bm = manager(tmp_path)
    callback = BudgetCallback(bm)
    litellm.callbacks = [callback]
    response = litellm.completion(user="alice", **call)
    assert callback.wait(timeout=10)
    assert bm.get_current_cost("alice") == pytest.approx(cost_of(response.usage), rel=1e-12)
    settles()
    assert bm.get_current_cost("alice") == pytest.approx(cost_of(response.usage), rel=1e-12)
    assert bm.get_model_cost("alice") == {"gpt-4o-mini": pytest.approx(cost_of(response.usage))}


def test_callback_charges_a_sync_stream_once_on_the_assembled_response(call, tmp_path):
    bm = manager(tmp_path)
    litellm.callbacks = [BudgetCallback(bm)]
    chunks = list(
        litellm.completion(
            user="alice", stream=True, stream_options={"include_usage": True}, **call
        )
    )
    usage = next(c.usage for c in reversed(chunks) if getattr(c, "usage", None))
    wait_for(lambda: bm.get_current_cost("alice") > 0)
    settles()
    assert bm.get_current_cost("alice") == pytest.approx(cost_of(usage), rel=1e-12)


def test_callback_charges_async_calls_and_streams_once_with_an_async_manager(call, stub):
    async def main() -> None:
        async with AsyncBudgetManager("p", store="memory://") as bm:
            await bm.create_budget(1.0, "alice")
            callback = BudgetCallback(bm)
            litellm.callbacks = [callback]
            response = await litellm.acompletion(user="alice", **call)
            expected = cost_of(response.usage)
            assert await callback.async_wait(timeout=10)
            assert await bm.get_current_cost("alice") == pytest.approx(expected, rel=1e-12)
            stream = await litellm.acompletion(
                user="alice", stream=True, stream_options={"include_usage": True}, **call
            )
            chunks = [chunk async for chunk in stream]
            usage = next(c.usage for c in reversed(chunks) if getattr(c, "usage", None))
            expected += cost_of(usage)
            await await_for(lambda: _spent_at_least(bm, expected))
            await asyncio.sleep(0.5)
            assert await bm.get_current_cost("alice") == pytest.approx(expected, rel=1e-12)
            assert await bm.get_holds("alice") == []  # both holds were settled

    asyncio.run(main())


async def _spent_at_least(bm: AsyncBudgetManager, amount: float) -> bool:
    return await bm.get_current_cost("alice") >= amount * (1 - 1e-9)


def test_callback_with_a_sync_manager_on_acompletion(call, tmp_path):
    bm = manager(tmp_path)
    litellm.callbacks = [BudgetCallback(bm)]

    async def main() -> Any:
        response = await litellm.acompletion(user="alice", **call)
        await _settled(bm)
        return response

    response = asyncio.run(main())
    settles()
    assert bm.get_current_cost("alice") == pytest.approx(cost_of(response.usage), rel=1e-12)
    assert bm.get_holds("alice") == []


@pytest.mark.parametrize("stream", [False, True])
def test_callback_refuses_acompletion_over_budget_and_sends_nothing(call, stub, tmp_path, stream):
    bm = manager(tmp_path, budget=1e-6)  # less than the prompt and one output token of a call
    litellm.callbacks = [BudgetCallback(bm)]
    before = served(stub)

    async def main() -> None:
        await litellm.acompletion(user="alice", stream=stream, **call)

    with pytest.raises(BudgetExceededError):
        asyncio.run(main())
    assert served(stub) == before
    assert bm.get_current_cost("alice") == 0
    assert bm.get_holds("alice") == []


def test_callback_holds_the_worst_case_while_an_acompletion_is_in_flight(call, stub, tmp_path):
    worst = float(worst_case(MODEL, MESSAGES).cost(50))
    bm = manager(tmp_path, budget=worst * 1.5)  # room for one call in flight, not two
    litellm.callbacks = [BudgetCallback(bm)]
    slow = {"extra_headers": {"X-Stub-Delay": "1"}}
    before = served(stub)

    async def main() -> list[Any]:
        first = asyncio.ensure_future(
            litellm.acompletion(user="alice", max_tokens=50, **slow, **call)
        )
        await asyncio.sleep(0.3)
        second = litellm.acompletion(user="alice", max_tokens=50, **call)
        both = list(await asyncio.gather(first, second, return_exceptions=True))
        await _settled(bm)  # the success hook runs on LiteLLM's logging worker, on this loop
        return both

    first, second = asyncio.run(main())
    assert isinstance(second, BudgetExceededError)
    assert not isinstance(first, BaseException)
    assert served(stub) == before + 1
    assert bm.get_current_cost("alice") == pytest.approx(cost_of(first.usage))


async def _settled(bm: BudgetManager) -> None:
    for _ in range(500):
        if bm.get_current_cost("alice") > 0 and bm.get_holds("alice") == []:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the callback did not settle the hold")


def test_callback_cannot_refuse_litellm_completion_so_it_charges_it(call, stub, tmp_path):
    # LiteLLM 1.110.2 runs no hook before a sync chat completion that may stop it.
    bm = manager(tmp_path, budget=1e-6)
    litellm.callbacks = [BudgetCallback(bm)]
    before = served(stub)
    response = litellm.completion(user="alice", **call)
    assert served(stub) == before + 1
    wait_for(lambda: bm.get_current_cost("alice") > 0)
    assert bm.get_current_cost("alice") == pytest.approx(cost_of(response.usage))


def test_callback_releases_the_hold_of_a_failed_acompletion(call, tmp_path):
    bm = manager(tmp_path)
    litellm.callbacks = [BudgetCallback(bm)]

    async def main() -> None:
        with pytest.raises(litellm.BadRequestError):
            await litellm.acompletion(user="alice", extra_headers={"X-Stub-Status": "400"}, **call)
        await _released(bm)

    asyncio.run(main())
    assert bm.get_holds("alice") == []
    assert bm.get_current_cost("alice") == 0


def test_callback_reads_the_user_from_metadata(call, tmp_path):
    bm = manager(tmp_path)
    litellm.callbacks = [BudgetCallback(bm)]
    response = litellm.completion(metadata={"user": "alice"}, **call)
    wait_for(lambda: bm.get_current_cost("alice") > 0)
    assert bm.get_current_cost("alice") == pytest.approx(cost_of(response.usage))


def test_callback_warns_about_a_call_without_a_user(call, tmp_path, caplog):
    bm = manager(tmp_path)
    litellm.callbacks = [BudgetCallback(bm)]
    with caplog.at_level("WARNING", logger="budget_manager"):
        litellm.completion(**call)
        wait_for(lambda: "has no user= to charge" in caplog.text)
    assert bm.get_current_cost("alice") == 0


def test_callback_needs_a_budget_manager() -> None:
    with pytest.raises(InvalidInputError):
        BudgetCallback(object())  # type: ignore[arg-type]


# -- the enforcing wrappers ----------------------------------------------------------------------
def test_completion_settles_the_hold_with_the_reported_usage(call, stub, tmp_path):
    bm = manager(tmp_path)
    before = served(stub)
    response = completion(bm, user="alice", max_tokens=100, **call)
    assert served(stub) == before + 1
    assert bm.get_current_cost("alice") == pytest.approx(cost_of(response.usage), rel=1e-12)
    assert bm.get_holds("alice") == []


def test_completion_with_the_callback_registered_charges_once(call, tmp_path):
    bm = manager(tmp_path)
    litellm.callbacks = [BudgetCallback(bm)]
    response = completion(bm, user="alice", **call)
    settles()
    assert bm.get_current_cost("alice") == pytest.approx(cost_of(response.usage), rel=1e-12)


def test_completion_over_budget_sends_nothing(call, stub, tmp_path):
    bm = manager(tmp_path, budget=1e-6)
    before = served(stub)
    with pytest.raises(BudgetExceededError):
        completion(bm, user="alice", max_tokens=100, **call)
    assert served(stub) == before
    assert bm.get_holds("alice") == []


def test_completion_without_a_user_is_an_error_and_sends_nothing(call, stub, tmp_path):
    bm = manager(tmp_path)
    before = served(stub)
    with pytest.raises(InvalidInputError, match="user="):
        completion(bm, **call)
    assert served(stub) == before


def test_completion_needs_a_sync_manager_and_acompletion_an_async_one(call, tmp_path):
    with pytest.raises(InvalidInputError, match="BudgetManager"):
        completion(AsyncBudgetManager("p", store="memory://"), user="alice", **call)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="AsyncBudgetManager"):
        asyncio.run(acompletion(manager(tmp_path), user="alice", **call))  # type: ignore[arg-type]


def test_completion_releases_the_hold_when_the_provider_fails(call, tmp_path):
    bm = manager(tmp_path)
    with pytest.raises(litellm.BadRequestError):
        completion(bm, user="alice", extra_headers={"X-Stub-Status": "400"}, **call)
    assert bm.get_holds("alice") == []
    assert bm.get_current_cost("alice") == 0
    assert bm.get_remaining_budget("alice") == 1.0


def test_completion_fit_sends_the_max_tokens_the_budget_buys(call, tmp_path):
    worst = worst_case(MODEL, MESSAGES)
    budget = float(worst.cost(40))
    bm = manager(tmp_path, budget=budget)
    sent = Sent()
    litellm.callbacks = [sent]
    completion(bm, user="alice", max_tokens="fit", **call)
    assert sent.params[-1]["max_tokens"] == worst.fit(Decimal(str(budget))) == 40
    assert 0 < bm.get_current_cost("alice") <= budget


def test_completion_max_completion_tokens_is_held_and_sent(call, tmp_path):
    bm = manager(tmp_path)
    sent = Sent()
    litellm.callbacks = [sent]
    completion(bm, user="alice", max_completion_tokens=64, **call)
    assert sent.params[-1]["max_completion_tokens"] == 64
    assert "max_tokens" not in sent.params[-1]


def test_completion_stream_settles_when_it_ends(call, tmp_path):
    bm = manager(tmp_path)
    stream = completion(bm, user="alice", stream=True, **call)
    assert bm.get_current_cost("alice") == 0 and len(bm.get_holds("alice")) == 1
    chunks = list(stream)
    usage = next(c.usage for c in reversed(chunks) if getattr(c, "usage", None))
    assert bm.get_current_cost("alice") == pytest.approx(cost_of(usage), rel=1e-12)
    assert bm.get_holds("alice") == []


def test_completion_stream_closed_early_settles_what_was_counted(call, tmp_path):
    bm = manager(tmp_path)
    with completion(bm, user="alice", stream=True, **call) as stream:
        first = [next(stream) for _ in range(3)]
    text = "".join(c.choices[0].delta.content or "" for c in first if c.choices)
    expected = completion_cost(model="gpt-4o-mini", messages=MESSAGES, completion=text)
    assert bm.get_current_cost("alice") == pytest.approx(expected, rel=1e-12)
    assert bm.get_holds("alice") == []


def test_acompletion_settles_and_streams(call, stub):
    async def main() -> None:
        async with AsyncBudgetManager("p", store="memory://") as bm:
            await bm.create_budget(1.0, "alice")
            response = await acompletion(bm, user="alice", **call)
            expected = cost_of(response.usage)
            assert await bm.get_current_cost("alice") == pytest.approx(expected, rel=1e-12)
            stream = await acompletion(bm, user="alice", stream=True, **call)
            chunks = [chunk async for chunk in stream]
            usage = next(c.usage for c in reversed(chunks) if getattr(c, "usage", None))
            expected += cost_of(usage)
            assert await bm.get_current_cost("alice") == pytest.approx(expected, rel=1e-12)
            assert await bm.get_holds("alice") == []

    asyncio.run(main())


def test_acompletion_over_budget_or_failing_sends_nothing_or_releases(call, stub):
    async def main() -> None:
        async with AsyncBudgetManager("p", store="memory://") as bm:
            await bm.create_budget(1e-6, "alice")
            before = served(stub)
            with pytest.raises(BudgetExceededError):
                await acompletion(bm, user="alice", max_tokens=100, **call)
            assert served(stub) == before
            await bm.create_budget(1.0, "bob")
            with pytest.raises(litellm.BadRequestError):
                await acompletion(bm, user="bob", extra_headers={"X-Stub-Status": "400"}, **call)
            assert await bm.get_holds("bob") == []
            assert await bm.get_current_cost("bob") == 0

    asyncio.run(main())


def test_acompletion_stream_closed_early_settles_what_was_counted(call, stub):
    async def main() -> None:
        async with AsyncBudgetManager("p", store="memory://") as bm:
            await bm.create_budget(1.0, "alice")
            stream = await acompletion(bm, user="alice", stream=True, **call)
            async with stream:
                first = [await stream.__anext__() for _ in range(3)]
            text = "".join(c.choices[0].delta.content or "" for c in first if c.choices)
            expected = completion_cost(model="gpt-4o-mini", messages=MESSAGES, completion=text)
            assert await bm.get_current_cost("alice") == pytest.approx(expected, rel=1e-12)
            assert await bm.get_holds("alice") == []

    asyncio.run(main())


# -- races -----------------------------------------------------------------------------------------
RACE_STORES = ["json", "sqlite", "postgresql", "redis"]


def _race_budget() -> float:
    # Room for about three calls' worst case (max_tokens=50): most of the racers are refused.
    return float(worst_case(MODEL, MESSAGES).cost(50)) * 3.5


@pytest.mark.parametrize("kind", RACE_STORES)
def test_16_threads_through_completion_never_settle_more_than_the_budget(
    call, stub, tmp_path, kind
):
    budget = _race_budget()
    with store_url(kind, tmp_path) as url:
        bm = BudgetManager("race", store=url)
        bm.create_budget(budget, "alice")
        before = served(stub)
        outcomes: list[str] = []
        start = threading.Barrier(16)

        def racer() -> None:
            start.wait()
            for _ in range(3):
                try:
                    completion(bm, user="alice", max_tokens=50, **call)
                    outcomes.append("sent")
                except BudgetExceededError:
                    outcomes.append("refused")

        threads = [threading.Thread(target=racer) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        spent = bm.get_current_cost("alice")
        sent = outcomes.count("sent")
        assert len(outcomes) == 48 and 0 < sent < 48
        assert served(stub) - before == sent
        assert spent <= budget
        assert bm.get_holds("alice") == []
        bm.close()


@pytest.mark.parametrize("kind", RACE_STORES)
def test_32_tasks_through_acompletion_never_settle_more_than_the_budget(call, stub, tmp_path, kind):
    budget = _race_budget()

    async def main(url: str) -> None:
        async with AsyncBudgetManager("race", store=url) as bm:
            await bm.create_budget(budget, "alice")
            before = served(stub)

            async def racer() -> str:
                try:
                    await acompletion(bm, user="alice", max_tokens=50, **call)
                    return "sent"
                except BudgetExceededError:
                    return "refused"

            outcomes = await asyncio.gather(*(racer() for _ in range(32)))
            sent = outcomes.count("sent")
            assert 0 < sent < 32
            assert served(stub) - before == sent
            assert await bm.get_current_cost("alice") <= budget
            assert await bm.get_holds("alice") == []

    with store_url(kind, tmp_path) as url:
        asyncio.run(main(url))


def test_callback_with_an_async_manager_charges_litellm_completion(call, tmp_path):
    bm = AsyncBudgetManager("p", path=tmp_path / "budgets.json")
    asyncio.run(bm.create_budget(1.0, "alice"))
    litellm.callbacks = [BudgetCallback(bm)]
    response = litellm.completion(user="alice", **call)
    wait_for(lambda: asyncio.run(bm.get_current_cost("alice")) > 0)
    settles()
    assert asyncio.run(bm.get_current_cost("alice")) == pytest.approx(cost_of(response.usage))


# -- a model this library has no price for --------------------------------------------------------
UNPRICED = "stub-unpriced-model"


@pytest.fixture
def unpriced(call: dict[str, Any]) -> dict[str, Any]:
    """A call to a model only LiteLLM has a price for ($1 / $2 per million tokens)."""
    litellm.register_model(
        {
            UNPRICED: {
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
                "litellm_provider": "openai",
                "mode": "chat",
            }
        }
    )
    return {**call, "model": f"openai/{UNPRICED}"}


def litellm_price(usage: Any) -> float:
    return float(usage.prompt_tokens * 1e-6 + usage.completion_tokens * 2e-6)


def test_callback_charges_litellms_price_for_a_model_unknown_here(unpriced, tmp_path):
    bm = manager(tmp_path)
    litellm.callbacks = [BudgetCallback(bm)]
    response = litellm.completion(user="alice", **unpriced)
    wait_for(lambda: bm.get_current_cost("alice") > 0)
    assert bm.get_current_cost("alice") == pytest.approx(litellm_price(response.usage))


def test_wrapper_refuses_an_unpriced_model_unless_the_budget_allows_it(unpriced, stub, tmp_path):
    bm = manager(tmp_path)
    before = served(stub)
    with pytest.raises(UnknownModelError):
        completion(bm, user="alice", max_tokens=10, **unpriced)
    assert served(stub) == before
    allowing = BudgetManager("q", path=tmp_path / "q.json", on_unknown_model="allow")
    allowing.create_budget(1.0, "alice")
    response = completion(allowing, user="alice", max_tokens=10, **unpriced)
    assert allowing.get_current_cost("alice") == pytest.approx(litellm_price(response.usage))


def test_completion_with_both_output_limits_is_an_error_and_sends_nothing(call, stub, tmp_path):
    bm = manager(tmp_path)
    before = served(stub)
    with pytest.raises(InvalidInputError, match="not both"):
        completion(bm, user="alice", max_tokens=10, max_completion_tokens=20, **call)
    assert served(stub) == before
    assert bm.get_holds("alice") == []


def test_callback_releases_the_hold_after_litellms_retries_fail(call, stub, tmp_path):
    bm = manager(tmp_path)
    callback = BudgetCallback(bm)
    litellm.callbacks = [callback]
    before = served(stub)

    async def main() -> None:
        with pytest.raises(litellm.InternalServerError):
            await litellm.acompletion(
                user="alice", num_retries=2, extra_headers={"X-Stub-Status": "500"}, **call
            )
        assert await callback.async_wait(timeout=10)
        await _released(bm)

    asyncio.run(main())
    assert served(stub) - before == 3
    assert bm.get_current_cost("alice") == 0


async def _released(bm: BudgetManager) -> None:
    for _ in range(500):
        if bm.get_holds("alice") == []:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the hold was not released")


def test_callback_prices_cached_and_reasoning_tokens_with_this_librarys_engine(tmp_path):
    # The local server reports no cached tokens, so LiteLLM's own response object is handed to
    # the hook LiteLLM would call.
    bm = manager(tmp_path)
    usage = litellm.Usage(
        prompt_tokens=1000,
        completion_tokens=500,
        total_tokens=1500,
        prompt_tokens_details={"cached_tokens": 800},
        completion_tokens_details={"reasoning_tokens": 300},
    )
    response = litellm.ModelResponse(model="gpt-4o-mini", usage=usage)
    kwargs = {"litellm_call_id": "call-1", "user": "alice", "model": "gpt-4o-mini"}
    callback = BudgetCallback(bm)
    callback.log_success_event(kwargs, response, None, None)
    callback.log_success_event(kwargs, response, None, None)  # the same call again
    # 200 uncached and 800 cached prompt tokens, 500 output tokens (reasoning included)
    expected = (
        Decimal("200") * Decimal("0.15e-6") + 800 * Decimal("0.075e-6") + 500 * Decimal("0.6e-6")
    )
    assert bm.get_current_cost("alice") == pytest.approx(float(expected), rel=1e-12)
    assert bm.get_current_cost("alice") == pytest.approx(completion_cost(response), rel=1e-12)
