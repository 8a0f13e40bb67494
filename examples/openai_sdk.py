"""The OpenAI SDK, budgeted: wrap the client once, then call it as always. Each call's worst case
is held before it is sent, and settled with the usage the response reports.

    OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 python examples/openai_sdk.py
"""

import os

from _endpoint import ensure_endpoint
from openai import OpenAI

from budget_manager import BudgetExceededError, BudgetManager, wrap

ensure_endpoint()
os.environ.setdefault("OPENAI_API_KEY", "sk-your-key")

bm = BudgetManager("sdk-app", store="sqlite:///sdk-app.db")
bm.create_budget(total_budget=0.001, user="ann", duration="daily")
client = wrap(OpenAI(), bm, user="ann")  # an OpenAI client still, to you and to type checkers

reply = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Hey, how's it going?"}],
    max_tokens=100,
)
print(reply.choices[0].message.content[:40])

# Streams settle when they end (or are closed); so do the SDK's .stream(...) helpers.
with client.responses.stream(
    model="gpt-4o-mini", input="Tell me a story.", max_output_tokens=100
) as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            print(event.delta, end="")
print()
print(f"ann spent ${bm.get_current_cost('ann'):.6f} of ${bm.get_total_budget('ann')}")

try:  # its worst case (4,000 output tokens of gpt-4o) does not fit: nothing is sent
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "A long essay, please."}],
        max_tokens=4000,
    )
except BudgetExceededError as exc:
    print(f"refused before sending: {exc}")
