"""Many users calling at once from one event loop: each call's worst case is held before it is
sent, so the budgets hold however many calls are in flight.

    OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 python examples/async_app.py
"""

import asyncio

from _endpoint import ensure_endpoint

from budget_manager import AsyncBudgetManager, BudgetExceededError

ensure_endpoint()
MESSAGES = [{"role": "user", "content": "Hey, how's it going?"}]


async def handle(bm: AsyncBudgetManager, user: str) -> str:
    """What a request handler (FastAPI, aiohttp, ...) would do for one user's request."""
    try:
        response = await bm.completion(
            user=user, model="gpt-4o-mini", messages=MESSAGES, max_tokens=200
        )
    except BudgetExceededError as exc:
        return f"{user}: refused ({exc.user} is out of budget)"
    return f"{user}: {response.choices[0].message.content[:20]}..."


async def main() -> None:
    async with AsyncBudgetManager("async-app", store="sqlite:///async-app.db") as bm:
        await bm.create_budget(total_budget=0.01, user="team", duration="daily")
        for name in ("ann", "bob", "cid"):
            await bm.create_budget(total_budget=0.002, user=name, duration="daily", parent="team")
        # 60 requests at once, 20 per user: each user's budget runs out, and no call goes
        # out unless its worst case fits.
        answers = await asyncio.gather(*(handle(bm, u) for u in ["ann", "bob", "cid"] * 20))
        print(sum("refused" not in a for a in answers), "calls sent,", len(answers), "requests")
        for name in ("ann", "bob", "cid", "team"):
            spent = await bm.get_current_cost(name)
            print(f"{name} spent ${spent:.6f} of ${await bm.get_total_budget(name)}")


asyncio.run(main())
