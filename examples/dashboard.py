"""Fill a project of a running budget service, then point a person at its dashboard.

    budget-manager serve --store sqlite:///budgets.db --api-key "$KEY" &
    BUDGET_MANAGER_API_BASE=http://127.0.0.1:8000 BUDGET_MANAGER_API_KEY="$KEY" \\
        python examples/dashboard.py
"""

import os

import requests

from budget_manager import BudgetManager

base = os.environ["BUDGET_MANAGER_API_BASE"]
key = os.environ["BUDGET_MANAGER_API_KEY"]
auth = {"Authorization": f"Bearer {key}"}

budgets = BudgetManager("demo", client_type="hosted", api_base=base, headers=auth)
budgets.create_budget(total_budget=50, user="team", duration="monthly")
budgets.create_budget(total_budget=20, user="alice", duration="monthly", parent="team")
budgets.update_cost(user="alice", model="gpt-4o", input_text="Hello!", output_text="Hi there.")
hold = budgets.reserve("alice", amount=0.5, model="gpt-4o", ttl=600)  # shows under open holds

# The page wants the key: a browser without it gets the login page, which asks for it once.
assert requests.get(f"{base}/dashboard", timeout=10).status_code == 401
assert requests.get(f"{base}/dashboard", headers=auth, timeout=10).status_code == 200
print(f"open {base}/dashboard?project=demo and enter the API key")
print(f"alice has spent ${budgets.get_current_cost('alice'):.6f}, holding {hold.amount}")
