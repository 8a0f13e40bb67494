"""Budgets that reset: daily / weekly / monthly / yearly, or any span such as "12h" or "2w".

Periods are counted from the budget's created_at, on the calendar: a monthly budget created on
Jan 31 resets on Feb 28 (29 in leap years), then Mar 31. An ended period reads as reset at the
next access; no cron job is needed. A clock is passed in here so the example need not wait.
"""

from datetime import datetime, timezone

from budget_manager import BudgetManager


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


now = at("2024-01-31T09:00:00")
budget_manager = BudgetManager(project_name="durations_demo", clock=lambda: now)

user = "1234"
budget_manager.create_budget(total_budget=10, user=user, duration="monthly")
budget_manager.update_cost(user=user, model="gpt-4o", input_text="hi", output_text="hello there")
print("spent on Jan 31:", budget_manager.get_current_cost(user))

for day in ("2024-02-28T08:59:59", "2024-02-29T09:00:00", "2024-03-31T09:00:00"):
    now = at(day)
    reset_at = datetime.fromtimestamp(budget_manager.get_reset_at(user) or 0, timezone.utc)
    print(
        f"{day}: spent {budget_manager.get_current_cost(user)}, next reset {reset_at:%Y-%m-%d %H:%M}"
    )
    budget_manager.update_cost(user=user, model="gpt-4o", input_text="hi", output_text="hello")

budget_manager.create_budget(total_budget=1, user="burst", duration="12h")
budget_manager.update_budget_all_users()  # still works, for code that runs it from a cron job
print("users:", budget_manager.get_users())
