"""The seed's per-user budget: check the budget, call, record the cost."""

from _endpoint import ensure_endpoint

from budget_manager import BudgetManager, completion

ensure_endpoint()

budget_manager = BudgetManager(project_name="test_project")

user = "1234"

# create a budget if new user user
if not budget_manager.is_valid_user(user):
    budget_manager.create_budget(total_budget=10, user=user)

# check if a given call can be made
if budget_manager.get_current_cost(user=user) <= budget_manager.get_total_budget(user):
    response = completion(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hey, how's it going?"}]
    )
    budget_manager.update_cost(completion_obj=response, user=user)
else:
    response = "Sorry - no budget!"

print(f"user {user} has spent ${budget_manager.get_current_cost(user):.6f}")
