"""Benchmark: reserve + settle pairs per second from 1,000 concurrent asyncio tasks in one event
loop, on Redis, beside the ceiling measured in the same run.

    .venv/bin/python bench/async_holds.py                 # 1,000 tasks, 3 runs of 5 s
    .venv/bin/python bench/async_holds.py --tasks 100 --runs 5

Each task loops ``async with bm.reserve(user, amount=0.01) as hold: await hold.settle(...)``
until the common deadline, all on one ``AsyncBudgetManager`` (one ``redis.asyncio`` pool of 64
connections), for one hot user and for 10,000 users spread. After each run the spent total must
equal pairs x 0.01 exactly. Beside it, in the same run: the same loop from one thread with the
sync ``BudgetManager`` (one call at a time), and the ceiling: ``redis-benchmark`` (64 clients)
running EVALSHA of a script making one comparable update, halved (a pair is two scripts). Redis
is a private ``redis-server`` without persistence on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from holds import Context, redis_ceiling, redis_cpu

from budget_manager import AsyncBudgetManager, BudgetExceededError, BudgetManager

AMOUNT = 0.01


async def _setup(url: str, users: list[str]) -> None:
    async with AsyncBudgetManager("bench", store=url) as bm:
        await asyncio.gather(*(bm.create_budget(total_budget=1e9, user=u) for u in users))


async def _spent(url: str, users: list[str]) -> Decimal:
    async with AsyncBudgetManager("bench", store=url) as bm:
        costs = await asyncio.gather(*(bm.get_current_cost(u) for u in users))
    return sum((Decimal(str(c)) for c in costs), Decimal(0))


async def _async_run(
    url: str, users: list[str], tasks: int, seconds: float
) -> tuple[int, float, float]:
    """Pairs made by ``tasks`` concurrent tasks started for ``seconds``; the seconds until the
    last task ended (tasks run in near lockstep, so ``seconds`` alone would round the rate to
    multiples of ``tasks / seconds``); the process's CPU seconds."""
    pairs = 0
    async with AsyncBudgetManager("bench", store=url) as bm:
        now = time.time()
        for user in users:  # untimed: the levels every pair needs, as a long-running process has
            await bm._ops.run(bm._ops.flows.levels(user, now))
        deadline = time.monotonic() + seconds

        async def task() -> None:
            nonlocal pairs
            while time.monotonic() < deadline:
                user = users[0] if len(users) == 1 else random.choice(users)
                try:
                    async with bm.reserve(user, amount=AMOUNT) as hold:
                        await hold.settle(cost=AMOUNT)
                    pairs += 1
                except BudgetExceededError:  # pragma: no cover - budgets are too large to refuse
                    pass

        cpu, started = time.process_time(), time.monotonic()
        await asyncio.gather(*(task() for _ in range(tasks)))
        return pairs, time.monotonic() - started, time.process_time() - cpu


def _sync_run(url: str, users: list[str], seconds: float) -> int:
    bm = BudgetManager("bench", store=url)
    now = time.time()
    for user in users:
        bm._ops.run(bm._ops.flows.levels(user, now))  # type: ignore[attr-defined]
    pairs = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        user = users[0] if len(users) == 1 else random.choice(users)
        with bm.reserve(user, amount=AMOUNT) as hold:
            hold.settle(cost=AMOUNT)
        pairs += 1
    bm.close()
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of a private one")
    args = parser.parse_args(argv)
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, load {os.getloadavg()}"
    )
    with tempfile.TemporaryDirectory() as folder:
        ctx = Context(Path(folder), args.redis_url)
        try:
            for case, count in (("hot", 1), ("spread", args.users)):
                users = [f"u{i}" for i in range(count)]
                rows = []
                for _ in range(args.runs):
                    url = f"{ctx.redis(False)}?prefix=bench-{uuid.uuid4().hex[:8]}"
                    asyncio.run(_setup(url, users))
                    ceiling = redis_ceiling(ctx, False, 64, args.users, 200_000)[case] / 2
                    server = redis_cpu(ctx, False) if args.redis_url is None else 0.0
                    pairs, elapsed, cpu = asyncio.run(
                        _async_run(url, users, args.tasks, args.seconds)
                    )
                    server = (redis_cpu(ctx, False) - server) if args.redis_url is None else 0.0
                    spent = asyncio.run(_spent(url, users))
                    expected = Decimal(pairs) * Decimal(str(AMOUNT))
                    url_sync = f"{ctx.redis(False)}?prefix=bench-{uuid.uuid4().hex[:8]}"
                    asyncio.run(_setup(url_sync, users))
                    sync_pairs = _sync_run(url_sync, users, args.seconds)
                    rows.append(
                        (
                            pairs / elapsed,
                            sync_pairs / args.seconds,
                            ceiling,
                            cpu,
                            server,
                            pairs,
                        )
                    )
                    print(
                        f"  {case:6} {args.tasks} tasks: {pairs / args.seconds:8,.0f} pairs/s "
                        f"(spent off by {spent - expected}; CPU us/pair: client "
                        f"{cpu / pairs * 1e6:.0f}, Redis {server / pairs * 1e6:.0f}); "
                        f"one sync thread {sync_pairs / args.seconds:,.0f}/s; "
                        f"ceiling {ceiling:,.0f} pairs/s",
                        flush=True,
                    )
                    assert spent == expected, (spent, expected)
                median = statistics.median(r[0] for r in rows)
                print(
                    f"{case}: median {median:,.0f} pairs/s from {args.tasks} tasks "
                    f"(runs {', '.join(f'{r[0]:,.0f}' for r in rows)}); one sync thread "
                    f"{statistics.median(r[1] for r in rows):,.0f}/s; ceiling "
                    f"{statistics.median(r[2] for r in rows):,.0f} pairs/s; ratio "
                    f"{median / statistics.median(r[2] for r in rows):.2f}"
                )
        finally:
            ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
