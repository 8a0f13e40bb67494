"""The seed's text input/output example: price a call from its model and text alone."""

from budget_manager import BudgetManager

budget_manager = BudgetManager(project_name="test_project")

user = "12345"
budget_manager.create_budget(total_budget=10, user=user, duration="daily")

input_text = "hello world"
output_text = "it's a sunny day in san francisco"
model = "gpt-3.5-turbo"

budget_manager.update_cost(user=user, model=model, input_text=input_text, output_text=output_text)
print(budget_manager.get_current_cost(user))
