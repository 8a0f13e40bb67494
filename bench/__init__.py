"""Side-by-side benchmarks of budget_manager and litellm.BudgetManager: ``python -m bench``."""
