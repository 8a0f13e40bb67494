"""Type-checked by tests/test_wrap_typing.py (never run): each line below is a type error."""

import openai

from budget_manager import AsyncBudgetManager, BudgetManager, wrap

wrap(openai.AsyncOpenAI(api_key="k"), BudgetManager("p"))  # an asyncio client, a blocking manager
wrap(openai.OpenAI(api_key="k"), AsyncBudgetManager("p"))  # a blocking client, an asyncio manager
wrap("not a client", BudgetManager("p"))
