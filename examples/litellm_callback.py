"""Budgets for code that calls LiteLLM: a callback for the calls you already make, and wrappers
that refuse a call before it is sent.

    OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 python examples/litellm_callback.py
"""

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price download at import

import litellm
from _endpoint import ensure_endpoint

from budget_manager import AsyncBudgetManager, BudgetExceededError, BudgetManager
from budget_manager.integrations.litellm import BudgetCallback, acompletion, completion

CALL = {
    "model": "openai/gpt-4o-mini",
    "messages": [{"role": "user", "content": "Hey, how's it going?"}],
    "api_base": ensure_endpoint(),
    "api_key": os.environ.get("OPENAI_API_KEY", "sk-test"),
}

# 1. Keep calling litellm.completion: the callback charges each call to its user=.
bm = BudgetManager("litellm-app", path="litellm-budgets.json")
bm.create_budget(total_budget=0.001, user="ann")
callback = BudgetCallback(bm)
litellm.callbacks = [callback]
litellm.completion(user="ann", **CALL)
callback.wait()  # LiteLLM runs success callbacks just after the call returns
print(f"callback: ann spent ${bm.get_current_cost('ann'):.6f}")

# 2. The wrapper holds the worst case first: over budget, nothing is sent.
bm.create_budget(total_budget=0.00005, user="bob")  # one call's worst case fits, not two
for attempt in (1, 2):
    try:
        completion(bm, user="bob", max_tokens=50, **CALL)
        print(f"wrapper: bob's call {attempt} sent")
    except BudgetExceededError:
        print(f"wrapper: bob's call {attempt} refused, nothing sent")
print(f"wrapper: bob spent ${bm.get_current_cost('bob'):.6f} of $0.00005")


# 3. asyncio: the callback also refuses litellm.acompletion calls over budget before they are
#    sent; the async wrapper enforces with an AsyncBudgetManager.
async def main() -> None:
    bm.create_budget(total_budget=0.0001, user="cid")
    for attempt in range(1, 10):
        try:
            await litellm.acompletion(user="cid", max_tokens=50, **CALL)
        except BudgetExceededError:
            print(f"async callback: cid's call {attempt} refused, nothing sent")
            break
    await callback.async_wait()
    print(f"async callback: cid spent ${bm.get_current_cost('cid'):.6f} of $0.0001")
    async with AsyncBudgetManager("litellm-app-async", store="memory://") as abm:
        await abm.create_budget(total_budget=0.0001, user="dan")
        # max_tokens="fit" sends the largest max_tokens dan's budget can still pay for.
        stream = await acompletion(abm, user="dan", stream=True, max_tokens="fit", **CALL)
        chunks = [chunk async for chunk in stream]  # settled when the stream ends
        print(f"async wrapper: dan streamed {len(chunks)} chunks", end=", ")
        print(f"spent ${await abm.get_current_cost('dan'):.6f} of $0.0001")


asyncio.run(main())
