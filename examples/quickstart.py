"""The seed's quick start: a global cap over every completion() call."""

import os

from _endpoint import ensure_endpoint

import budget_manager
from budget_manager import BudgetExceededError, completion

ensure_endpoint()

# set env variable
os.environ.setdefault("OPENAI_API_KEY", "your-api-key")

budget_manager.max_budget = 0.001  # sets a max budget of $0.001

messages = [{"role": "user", "content": "Hey, how's it going"}]
completion(model="gpt-4", messages=messages)
print(budget_manager._current_cost)
try:
    completion(model="gpt-4", messages=messages)
except BudgetExceededError as exc:  # the first call already spent more than $0.001
    print(f"refused: {exc}")
