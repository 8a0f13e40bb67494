"""The Anthropic SDK, budgeted, in an asyncio app with many users: one wrapped client, and each
request names its user in ``metadata.user_id``. No call goes out unless its worst case fits in
that user's budget, however many are in flight.

    OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 python examples/anthropic_sdk.py
"""

import asyncio

from _endpoint import ensure_endpoint
from anthropic import AsyncAnthropic

from budget_manager import AsyncBudgetManager, BudgetExceededError, wrap

# The local test server speaks Anthropic's API too; with a real key, use AsyncAnthropic().
BASE_URL = ensure_endpoint().removesuffix("/v1")
MESSAGES = [{"role": "user", "content": "Hey, how's it going?"}]


async def handle(client: AsyncAnthropic, user: str) -> str:
    """What a request handler (FastAPI, aiohttp, ...) would do for one user's request."""
    try:
        message = await client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=MESSAGES,
            metadata={"user_id": user},
        )
    except BudgetExceededError:
        return f"{user}: refused"
    return f"{user}: {message.content[0].text[:20]}..."


async def main() -> None:
    async with AsyncBudgetManager("claude-app", store="sqlite:///claude-app.db") as bm:
        for name in ("ann", "bob", "cid"):
            await bm.create_budget(total_budget=0.0015, user=name, duration="daily")
        client = wrap(AsyncAnthropic(base_url=BASE_URL, api_key="sk-ant-your-key"), bm)
        answers = await asyncio.gather(*(handle(client, u) for u in ["ann", "bob", "cid"] * 10))
        print(sum("refused" not in a for a in answers), "calls sent,", len(answers), "requests")

        async with client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=50,
            messages=MESSAGES,
            metadata={"user_id": "ann"},
        ) as stream:
            async for text in stream.text_stream:
                print(text, end="")
        print()
        for name in ("ann", "bob", "cid"):
            spent = await bm.get_current_cost(name)
            print(f"{name} spent ${spent:.6f} of ${await bm.get_total_budget(name)}")


asyncio.run(main())
