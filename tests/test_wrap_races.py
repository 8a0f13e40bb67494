"""Races through wrap(): many calls at once against a small budget never settle more than it,
and every call sent is settled at the cost of what the server reported; on every shared store."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from contract import store_url
from wrap_helpers import ENDPOINTS, acall, call, client_for

from budget_manager import AsyncBudgetManager, BudgetExceededError, BudgetManager, wrap

KINDS = ["json", "sqlite", "postgresql", "redis"]
BUDGET = 0.0008  # a few calls' worst cases: most of the calls below are refused
SLOW = {"X-Stub-Delay": "0.05"}  # calls overlap


def _settled(outcomes: list[Any]) -> tuple[Decimal, int]:
    costs = [Decimal(str(o)) for o in outcomes if not isinstance(o, BudgetExceededError)]
    assert all(isinstance(o, (float, BudgetExceededError)) for o in outcomes), outcomes
    return sum(costs, Decimal(0)), len(costs)


@pytest.mark.parametrize("kind", KINDS)
def test_32_concurrent_async_calls_never_settle_past_the_budget(stub, kind, tmp_path: Path):
    async def main(url: str) -> tuple[list[Any], float]:
        async with AsyncBudgetManager("wrap-race", store=url) as bm:
            await bm.create_budget(total_budget=BUDGET, user="team")
            await bm.create_budget(total_budget=1, user="ann", parent="team")
            clients = {
                e: wrap(client_for(e, stub, is_async=True), bm, user="ann") for e in ENDPOINTS
            }

            async def one(index: int) -> Any:
                endpoint = ENDPOINTS[index % 3]
                form = ("create", "stream", "helper")[index // 3 % 3]
                try:
                    return await acall(
                        clients[endpoint], endpoint, form, limit=40, extra_headers=SLOW
                    )
                except BudgetExceededError as exc:
                    return exc

            outcomes = await asyncio.gather(*(one(i) for i in range(32)))
            assert await bm.get_holds("team") == []
            return list(outcomes), await bm.get_current_cost("team")

    with store_url(kind, tmp_path) as url:
        before = stub.requests
        outcomes, spent = asyncio.run(main(url))
    reported, sent = _settled(outcomes)
    assert 0 < sent < 32 and stub.requests - before == sent
    assert spent <= BUDGET
    assert Decimal(str(spent)) == pytest.approx(reported, rel=Decimal("1e-9"))


@pytest.mark.parametrize("kind", KINDS)
def test_16_threads_never_settle_past_the_budget(stub, kind, tmp_path: Path):
    with store_url(kind, tmp_path) as url:
        setup = BudgetManager("wrap-race", store=url)
        setup.create_budget(total_budget=BUDGET, user="team")
        setup.create_budget(total_budget=1, user="ann", parent="team")
        outcomes: list[Any] = []
        start = threading.Barrier(16)

        def one(index: int) -> None:
            bm = BudgetManager("wrap-race", store=url)  # one manager per thread, as per process
            endpoint = ENDPOINTS[index % 3]
            client = wrap(client_for(endpoint, stub), bm, user="ann")
            start.wait()
            try:
                outcomes.append(
                    call(
                        client,
                        endpoint,
                        ("create", "stream", "helper")[index // 3 % 3],
                        limit=40,
                        extra_headers=SLOW,
                    )
                )
            except BudgetExceededError as exc:
                outcomes.append(exc)
            finally:
                bm.close()

        before = stub.requests
        threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        spent = setup.get_current_cost("team")
        assert setup.get_holds("team") == []
        setup.close()
    reported, sent = _settled(outcomes)
    assert len(outcomes) == 16
    assert 0 < sent < 16 and stub.requests - before == sent
    assert spent <= BUDGET
    assert Decimal(str(spent)) == pytest.approx(reported, rel=Decimal("1e-9"))
