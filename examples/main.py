"""End to end: a global cap and per-user budgets against a chat endpoint on loopback.

    python examples/main.py

Uses OPENAI_BASE_URL when set, else starts a local OpenAI-compatible test server.
"""

import tempfile
from pathlib import Path

from _endpoint import ensure_endpoint

import budget_manager
from budget_manager import BudgetExceededError, BudgetManager, completion

print("endpoint:", ensure_endpoint())

budget_manager.max_budget = 0.003  # a global cap over every completion() call
users = BudgetManager("main_example", path=Path(tempfile.mkdtemp()) / "budgets.json")
users.create_budget(total_budget=0.002, user="alice", duration="daily")
users.create_budget(total_budget=0.01, user="bob", duration="monthly")

messages = [{"role": "user", "content": "Hey, how's it going?"}]
for user in ("alice", "bob"):
    while True:
        if users.get_current_cost(user) >= users.get_total_budget(user):
            print(f"{user} is out of budget: not calling")
            break
        try:
            response = completion(model="gpt-4o", messages=messages)
        except BudgetExceededError as exc:
            print(f"{user}: global cap reached, call refused: {exc}")
            break
        users.update_cost(user=user, completion_obj=response)
        print(
            f"{user}: {response.usage.prompt_tokens}+{response.usage.completion_tokens} tokens;"
            f" {user} ${users.get_current_cost(user):.6f} of ${users.get_total_budget(user)};"
            f" all calls ${budget_manager._current_cost:.6f} of ${budget_manager.max_budget}"
        )

for user in users.get_users():
    print(
        f"{user}: spent ${users.get_current_cost(user):.6f}, by model {users.get_model_cost(user)}"
    )
print("saved:", users.save_data())
