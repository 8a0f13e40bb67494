"""Spend history and threshold alerts: who spent what, and a word before a budget runs out."""

from budget_manager import BudgetManager

bm = BudgetManager(project_name="support-bot", path="history_demo.json")
bm.create_budget(total_budget=10.0, user="team-support", duration="monthly")
bm.create_budget(total_budget=0.045, user="ann", duration="monthly", parent="team-support")


@bm.on_threshold(fractions=(0.5, 0.8, 1.0))
def warn(alert):
    print(f"ALERT {alert.user} reached {alert.fraction:.0%}: ${alert.spent:.4f} of ${alert.budget}")


# What an SDK call reports: 4,000 prompt and 500 completion tokens of gpt-4o-mini ($0.0009 each).
response = {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 4000, "completion_tokens": 500}}
for _ in range(50):
    if bm.get_remaining_budget("ann") < 0.0009:
        break
    bm.update_cost(user="ann", completion_obj=response)

events = bm.history(user="ann", since="7d")
print(f"{len(events)} events; last: {events[-1].kind} {events[-1].model} {events[-1].tokens}")
print("by model:", bm.spend_report(since="7d", by="model"))
print("by user:", bm.spend_report(since="7d"))
