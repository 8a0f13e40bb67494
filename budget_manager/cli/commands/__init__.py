"""One module per command of ``budget-manager`` (listed in :data:`budget_manager.cli.COMMANDS`)."""
