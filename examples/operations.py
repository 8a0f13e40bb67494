"""Operating budgets from Python: what the ``budget-manager`` command line does, as library calls
(the same methods exist on AsyncBudgetManager, as coroutines)."""

from budget_manager import BudgetManager

with BudgetManager("ops", store="sqlite:///ops.db") as bm:
    # A user dict in LiteLLM's user_cost.json format; --replace in the CLI, replace=True here.
    bm.import_users(
        {
            "team": {"total_budget": 100, "current_cost": 0, "model_cost": {}},
            "alice": {"total_budget": 10, "current_cost": 0, "model_cost": {}, "parent": "team"},
        },
        replace=True,
    )
    bm.add_cost("alice", "0.0125", model="gpt-4o")  # a known cost, taken exactly
    hold = bm.reserve("alice", amount=2)

    for user, status in sorted(bm.budget_statuses().items()):
        print(
            f"{user}: spent {status.spent} of {status.total_budget}, "
            f"{status.holds} open hold(s) of {status.held}, {status.remaining} left"
        )

    print("released:", bm.release_hold(hold.id).state)
    print("ended periods reset:", bm.reset_expired())
    print("by model:", bm.spend_report(since="7d", by="model"))
