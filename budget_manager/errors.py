"""Every exception the library raises, in one hierarchy rooted at :class:`BudgetManagerError`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class BudgetManagerError(Exception):
    """Base class of every error raised by budget_manager."""


class BudgetExceededError(BudgetManagerError):
    """A spend cap was exceeded, so the call was not made."""

    def __init__(
        self,
        current_cost: float,
        max_budget: float,
        message: str | None = None,
        user: str | None = None,
    ) -> None:
        self.current_cost = current_cost
        self.max_budget = max_budget
        #: the budget that would be exceeded (the user's own or an ancestor's), when one is
        self.user = user
        self.message = message or (
            f"Budget has been exceeded! Current cost: {current_cost}, Max budget: {max_budget}"
        )
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.current_cost, self.max_budget, self.message, self.user))


class InvalidInputError(BudgetManagerError, ValueError):
    """An argument was rejected; nothing was changed. ``field`` names the argument, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.field))


class InvalidBudgetError(InvalidInputError):
    """A budget or cost figure is negative, not finite, or not a number."""


class UnknownDurationError(InvalidInputError):
    """A budget duration is not one this library understands."""


class TooManyModelsError(InvalidInputError):
    """A charge names a model that would take a budget's per-model breakdown past its cap."""


class MissingUsageError(InvalidInputError):
    """A response carries no token usage, so its cost cannot be known."""


class UnknownModelError(BudgetManagerError, ValueError):
    """A model has no price in the cost table; ``suggestions`` are the closest known names."""

    def __init__(
        self, model: str, message: str | None = None, suggestions: Sequence[str] = ()
    ) -> None:
        self.model = model
        self.suggestions = tuple(suggestions)
        closest = (
            f" (closest known names: {', '.join(map(repr, self.suggestions))})"
            if self.suggestions
            else ""
        )
        super().__init__(
            message
            or (
                f"No price is known for model {model!r}{closest}. Register one with "
                "budget_manager.register_model({"
                f"{model!r}: "
                '{"input_cost_per_token": ..., "output_cost_per_token": ...}})'
            )
        )


class UnknownUserError(BudgetManagerError, KeyError):
    """The user has no budget in this project."""

    def __init__(self, user: object, project: str | None = None) -> None:
        self.user = user
        self.project = project
        where = f" in project {project!r}" if project else ""
        self.message = (
            f"User {user!r} has no budget{where}; create one with create_budget(total_budget, user)"
        )
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return self.message


class UnknownHoldError(BudgetManagerError, KeyError):
    """No hold with this id exists (or it was forgotten long after it ended)."""

    def __init__(self, hold_id: object) -> None:
        self.hold_id = hold_id
        self.message = f"no hold {hold_id!r}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class HierarchyError(InvalidInputError):
    """A budget's parent is missing, would make a cycle or too deep a hierarchy, or a budget
    that others name as their parent was to be deleted; nothing was changed."""

    def __init__(self, message: str, field: str | None = "parent") -> None:
        super().__init__(message, field=field)


class IdempotencyConflictError(InvalidInputError):
    """An idempotency key (or hold id) was used again for a different request."""


class StoreError(BudgetManagerError):
    """The budget store could not be read or written."""


class CorruptStoreError(StoreError):
    """The budget data is unreadable or not budget data; it was left untouched."""


class StoreUnavailableError(StoreError):
    """The budget store (a file, database or service) cannot be reached."""


class TokenizerUnavailableError(BudgetManagerError, RuntimeError):
    """No tiktoken encoding file could be found or downloaded."""


class APIError(BudgetManagerError):
    """The model endpoint answered with an error."""

    def __init__(self, message: str, status_code: int | None = None, body: Any = None) -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(message)


class APIConnectionError(APIError):
    """The model endpoint could not be reached."""


class APITimeoutError(APIConnectionError):
    """The model endpoint did not answer in time."""


class MalformedResponseError(APIError):
    """The model endpoint answered with a body that is not a chat completion."""
