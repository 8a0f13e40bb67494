"""The asyncio API: AsyncBudgetManager mirrors BudgetManager, acompletion() mirrors completion(),
file stores never hold up the event loop, and many concurrent tasks never overspend. (The
contract suite runs every store through AsyncBudgetManager too: tests/test_contract.py.)"""

from __future__ import annotations

import asyncio
import inspect
import threading
from decimal import Decimal
from typing import Any

import pytest
from contract import REDIS_URL, backend, redis_available, require

import budget_manager
from budget_manager import (
    AsyncBudgetManager,
    AsyncHold,
    BudgetExceededError,
    BudgetManager,
    acompletion,
    completion_cost,
)
from budget_manager.errors import APIError
from budget_manager.stores.memory import MemoryStore
from budget_manager.stream import AsyncCompletionStream

MESSAGES = [{"role": "user", "content": "Hey, how's it going?"}]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# -- the same API -------------------------------------------------------------------------------
def _public(cls: type) -> dict[str, Any]:
    return {n: inspect.getattr_static(cls, n) for n in dir(cls) if not n.startswith("_")}


def test_every_method_of_budget_manager_is_a_coroutine_with_the_same_parameters():
    sync, aio = _public(BudgetManager), _public(AsyncBudgetManager)
    assert set(sync) <= set(aio)
    assert inspect.signature(BudgetManager.__init__).parameters.keys() == (
        inspect.signature(AsyncBudgetManager.__init__).parameters.keys()
    )
    for name, method in sync.items():
        if isinstance(method, property) or name in ("on_event", "on_threshold", "reserve"):
            continue
        mirror = aio[name]
        assert inspect.iscoroutinefunction(mirror), name
        assert inspect.signature(mirror).parameters.keys() == (
            inspect.signature(method).parameters.keys()
        ), name
        assert mirror.__doc__, name


def test_holds_work_with_async_with_and_await():
    async def main() -> None:
        async with AsyncBudgetManager("p", store="memory://") as bm:
            await bm.create_budget(total_budget=1, user="ann")
            async with bm.reserve("ann", amount=0.5) as hold:
                assert isinstance(hold, AsyncHold) and hold.amount == 0.5
                assert await bm.get_remaining_budget("ann") == 0.5
                assert await hold.settle(cost=0.2) == 0.2
            assert await bm.get_current_cost("ann") == 0.2
            async with bm.reserve("ann", amount=0.3):
                pass  # left unsettled: the held amount is recorded
            assert await bm.get_current_cost("ann") == 0.5
            with pytest.raises(RuntimeError):
                async with bm.reserve("ann", amount=0.3):
                    raise RuntimeError("the call failed")
            assert await bm.get_holds("ann") == [] and await bm.get_current_cost("ann") == 0.5
            hold = await bm.reserve("ann", amount=0.4)
            with pytest.raises(BudgetExceededError) as refused:
                await bm.reserve("ann", amount=0.2)
            assert refused.value.user == "ann"
            await hold.release()
            assert (await bm.user_dict)["ann"]["current_cost"] == 0.5

    run(main())


def test_file_stores_never_hold_up_the_event_loop():
    """A store operation that blocks (here: until told to go on) runs in a worker thread, so
    other tasks keep running meanwhile."""
    blocked, go = threading.Event(), threading.Event()

    class SlowStore(MemoryStore):
        def charge(self, *args: Any, **kwargs: Any) -> Any:
            blocked.set()
            assert go.wait(10)
            return super().charge(*args, **kwargs)

    async def main() -> None:
        bm = AsyncBudgetManager("p", store=SlowStore())
        await bm.create_budget(total_budget=1, user="ann")
        charging = asyncio.create_task(
            bm.update_cost(user="ann", model="gpt-4o", input_text="hi", output_text="yo")
        )
        while not blocked.is_set():
            await asyncio.sleep(0.001)
        # The loop is free while the charge waits in its thread: other work goes on.
        assert await bm.get_total_budget("ann") == 1
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0)
            ticks += 1
        assert not charging.done() and ticks == 5
        go.set()
        assert (await charging)["user"]["current_cost"] > 0

    run(main())


@pytest.mark.parametrize("kind", ["json", "sqlite", "postgresql", "redis"])
def test_a_thousand_tasks_never_overspend(kind, tmp_path):
    with backend(kind, tmp_path) as store:
        settled = run(_race(store.url, 1_000, Decimal("2.50")))
        assert sum(settled) == Decimal("2.50") and len(settled) == 250


async def _race(url: str, tasks: int, budget: Decimal) -> list[Decimal]:
    settled: list[Decimal] = []
    async with AsyncBudgetManager("race", store=url) as bm:
        await bm.create_budget(total_budget=float(budget), user="team")
        await bm.create_budget(total_budget=100, user="ann", parent="team")

        async def one() -> None:
            try:
                async with bm.reserve("ann", amount=0.01) as hold:
                    await asyncio.sleep(0)
                    settled.append(Decimal(str(await hold.settle(cost=0.01))))
            except BudgetExceededError:
                pass

        await asyncio.gather(*(one() for _ in range(tasks)))
        assert Decimal(str(await bm.get_current_cost("team"))) == sum(settled)
    return settled


# -- calls ------------------------------------------------------------------------------------
def test_acompletion_honours_max_budget_as_completion_does(stub, stub_url):
    async def main() -> None:
        response = await acompletion(model="gpt-4o", messages=MESSAGES)
        assert response.choices[0].message.content
        assert budget_manager._current_cost == pytest.approx(completion_cost(response))
        budget_manager.max_budget = budget_manager._current_cost / 2
        before = stub.requests
        with pytest.raises(BudgetExceededError):
            await acompletion(model="gpt-4o", messages=MESSAGES)
        assert stub.requests == before

    run(main())


def test_acompletion_streams_and_charges_when_the_stream_ends(stub, stub_url):
    async def main() -> None:
        stream = await acompletion(model="gpt-4o", messages=MESSAGES, stream=True)
        assert isinstance(stream, AsyncCompletionStream)
        chunks = [chunk async for chunk in stream]
        assert chunks and stream.text and stream.cost is not None
        assert budget_manager._current_cost == pytest.approx(stream.cost)

    run(main())


def test_strict_acompletion_holds_the_worst_case_of_tasks_in_flight(stub, stub_url):
    worst = float(budget_manager.costs.worst_case.worst_case("gpt-4o", MESSAGES).cost(40))
    budget_manager.max_budget = worst * 2.5  # room for two calls in flight, not three
    budget_manager.strict = True

    async def call() -> Any:
        try:
            return await acompletion(
                model="gpt-4o",
                messages=MESSAGES,
                max_tokens=40,
                extra_headers={"X-Stub-Delay": "0.3"},
            )
        except BudgetExceededError as exc:
            return exc

    async def main() -> list[Any]:
        return await asyncio.gather(*(call() for _ in range(6)))

    results = run(main())
    assert sum(not isinstance(r, BudgetExceededError) for r in results) == 2


def test_a_managed_async_call_holds_sends_and_settles(stub, stub_url):
    async def main() -> None:
        bm = AsyncBudgetManager("p", store="memory://")
        await bm.create_budget(total_budget=1, user="ann")
        response = await bm.completion(
            user="ann", model="gpt-4o", messages=MESSAGES, max_tokens=100
        )
        assert await bm.get_current_cost("ann") == pytest.approx(completion_cost(response))
        assert await bm.get_holds("ann") == []

        await bm.create_budget(total_budget=0.0005, user="bob")
        before = stub.requests
        with pytest.raises(BudgetExceededError):
            await bm.completion(user="bob", model="gpt-4o", messages=MESSAGES, max_tokens=1000)
        assert stub.requests == before

        with pytest.raises(APIError):
            await bm.completion(
                user="ann",
                model="gpt-4o",
                messages=MESSAGES,
                max_tokens=10,
                extra_headers={"X-Stub-Status": "503"},
            )
        assert await bm.get_holds("ann") == []

        spent = await bm.get_current_cost("ann")
        stream = await bm.completion(
            user="ann", model="gpt-4o", messages=MESSAGES, max_tokens=50, stream=True
        )
        assert len(await bm.get_holds("ann")) == 1
        async for _ in stream:
            break
        await stream.aclose()  # closed early: what arrived is settled
        assert await bm.get_holds("ann") == []
        assert await bm.get_current_cost("ann") == pytest.approx(spent + stream.cost)

    run(main())


def test_redis_is_spoken_to_with_redis_asyncio():
    require("Redis", redis_available())
    from budget_manager.stores.redis import AsyncRedisStore

    async def main() -> None:
        bm = AsyncBudgetManager("p", store=f"{REDIS_URL}?prefix=bmtest-async-native")
        await bm.create_budget(total_budget=1, user="ann")
        assert isinstance(bm.store, AsyncRedisStore)
        await bm.delete_budget("ann")
        await bm.close()

    run(main())
