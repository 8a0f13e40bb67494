"""budget-manager: spend caps and per-user budgets for LLM API calls.

A drop-in for LiteLLM's Budget Manager API (change ``from litellm import ...`` to
``from budget_manager import ...``), with exact money, calendar-correct periods and stores that
many processes can share without losing an update.

Module level:

- ``max_budget``: global cap in USD over calls made with :func:`completion` (None: no cap).
- ``_current_cost``: what those calls have cost so far in this process, in USD.
- :func:`completion`: an OpenAI-compatible chat call that respects ``max_budget``.
- :func:`cost_per_token`, :func:`completion_cost`, :func:`token_counter`: pricing and counting.
- :func:`register_model`, :func:`load_cost_table`, ``model_cost``: the price table.
- :class:`BudgetManager`: per-user budgets, in a hierarchy, with holds (:class:`Hold`) that
  make overspending impossible; ``strict``: hold each ``completion()``'s worst case against
  ``max_budget``.
- :class:`AsyncBudgetManager`, :class:`AsyncHold`, :func:`acompletion`: the same for asyncio.
- :func:`wrap`: an OpenAI or Anthropic SDK client whose calls are held and settled on budgets.
- :class:`BudgetStatus`: where a budget stands (``bm.budget_status(user)``,
  ``bm.budget_statuses()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .completion import completion
from .costs import completion_cost, cost_per_token, load_cost_table, model_cost, register_model
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BudgetExceededError,
    BudgetManagerError,
    CorruptStoreError,
    HierarchyError,
    IdempotencyConflictError,
    InvalidBudgetError,
    InvalidInputError,
    MalformedResponseError,
    MissingUsageError,
    StoreError,
    StoreUnavailableError,
    TokenizerUnavailableError,
    TooManyModelsError,
    UnknownDurationError,
    UnknownHoldError,
    UnknownModelError,
    UnknownUserError,
)
from .hold import AsyncHold, Hold
from .integrations.sdk import wrap
from .manager import BudgetManager
from .response import ModelResponse
from .status import BudgetStatus
from .tokens import token_counter

if TYPE_CHECKING:
    from .async_completion import acompletion
    from .async_manager import AsyncBudgetManager

__version__ = "0.1.0"

max_budget: float | None = None
_current_cost: float = 0.0
#: With True, completion() holds each call's worst case against max_budget before sending it
#: (calls in flight can then never overshoot the cap); False keeps the seed's rule.
strict: bool = False

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncBudgetManager",
    "AsyncHold",
    "BudgetExceededError",
    "BudgetManager",
    "BudgetManagerError",
    "BudgetStatus",
    "CorruptStoreError",
    "HierarchyError",
    "Hold",
    "IdempotencyConflictError",
    "InvalidBudgetError",
    "InvalidInputError",
    "MalformedResponseError",
    "MissingUsageError",
    "ModelResponse",
    "StoreError",
    "StoreUnavailableError",
    "TokenizerUnavailableError",
    "TooManyModelsError",
    "UnknownDurationError",
    "UnknownHoldError",
    "UnknownModelError",
    "UnknownUserError",
    "acompletion",
    "completion",
    "completion_cost",
    "cost_per_token",
    "load_cost_table",
    "max_budget",
    "model_cost",
    "register_model",
    "strict",
    "token_counter",
    "wrap",
]


def __getattr__(name: str) -> Any:
    # The asyncio API loads asyncio (a sizeable share of a cold import) only when first used.
    if name == "AsyncBudgetManager":
        from .async_manager import AsyncBudgetManager

        return AsyncBudgetManager
    if name == "acompletion":
        from .async_completion import acompletion

        return acompletion
    raise AttributeError(f"module 'budget_manager' has no attribute {name!r}")
