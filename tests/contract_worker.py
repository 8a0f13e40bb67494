"""A process of the contract suite's multi-process tests:
python tests/contract_worker.py KIND URL API MODE ARGS... (API: sync or async)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from budget_manager import AsyncBudgetManager, BudgetExceededError, BudgetManager


def manager(kind: str, url: str, api: str) -> Any:
    cls: Any = BudgetManager if api == "sync" else AsyncBudgetManager
    if kind == "hosted":
        return cls("contract", client_type="hosted", api_base=url)
    return cls("contract", store=url)


def race(bm: BudgetManager, user: str, count: int) -> None:
    """Reserve and settle $0.01 ``count`` times, printing each settled cost."""
    for _ in range(count):
        try:
            with bm.reserve(user, amount=0.01) as hold:
                print(hold.settle(cost=0.01), flush=True)
        except BudgetExceededError:
            pass


async def race_async(bm: AsyncBudgetManager, user: str, count: int) -> None:
    async def one() -> None:
        try:
            async with bm.reserve(user, amount=0.01) as hold:
                print(await hold.settle(cost=0.01), flush=True)
        except BudgetExceededError:
            pass

    await asyncio.gather(*(one() for _ in range(count)))
    await bm.close()  # in the loop that opened it, before the loop ends


def alerts(bm: Any, api: str, user: str, count: int) -> None:
    """Watch 0.5, 0.8 and 1.0 of every budget and race ``count`` $0.01 charges, printing each
    alert this process is told of as "alert USER FRACTION"."""
    bm.on_threshold(
        (0.5, 0.8, 1.0), callback=lambda a: print("alert", a.user, a.fraction, flush=True)
    )
    if api == "sync":
        race(bm, user, count)
        bm.close()
    else:
        asyncio.run(race_async(bm, user, count))


def main() -> None:
    kind, url, api, mode, *args = sys.argv[1:]
    bm = manager(kind, url, api)
    if mode == "race":
        if api == "sync":
            race(bm, args[0], int(args[1]))
            bm.close()
        else:
            asyncio.run(race_async(bm, args[0], int(args[1])))
    elif mode == "alerts":
        alerts(bm, api, args[0], int(args[1]))
    elif mode == "hold-and-die":  # hold, say so, and wait to be killed
        user, amount, ttl = args[0], float(args[1]), float(args[2])
        if api == "sync":
            bm.reserve(user, amount=amount, ttl=ttl)
        else:

            async def hold() -> None:
                await bm.reserve(user, amount=amount, ttl=ttl)

            asyncio.run(hold())
        print("held", flush=True)
        time.sleep(600)


if __name__ == "__main__":
    main()
