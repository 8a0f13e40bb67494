"""The most a call can cost before it is made: what a hold reserves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from .. import tokens
from ..errors import InvalidInputError
from ..money import MONEY_CONTEXT, ZERO, add, multiply
from .calculate import usage_cost
from .table import TABLE
from .usage import Usage


@dataclass(frozen=True, slots=True)
class WorstCase:
    """A call's prompt cost, the highest price of one output token, and the model's output limit."""

    model: str
    prompt: Decimal
    per_output_token: Decimal
    max_output_tokens: int | None

    def cost(self, max_tokens: int) -> Decimal:
        """The most the call can cost with ``max_tokens`` output tokens."""
        return add(self.prompt, multiply(self.per_output_token, max_tokens))

    def fit(self, available: Decimal) -> int:
        """The largest ``max_tokens`` whose worst case fits in ``available`` (at most the model's
        output limit; 0 when not even the prompt fits)."""
        left = available - self.prompt
        if left < 0:
            return 0
        if self.per_output_token == 0:
            return self.max_output_tokens or 0
        tokens_ = int(
            MONEY_CONTEXT.divide(left, self.per_output_token).to_integral_value(ROUND_FLOOR)
        )
        if self.max_output_tokens is not None:
            tokens_ = min(tokens_, self.max_output_tokens)
        return max(tokens_, 0)


def worst_case(model: str, messages: Iterable[Mapping[str, Any]] | None = None) -> WorstCase:
    """What sending ``messages`` to ``model`` can cost, less the output: the prompt's cost
    (counted with the model's tokenizer), the highest output price, and the model's limit."""
    prices = TABLE.prices(model)
    prompt = ZERO
    if messages is not None:
        if isinstance(messages, (str, bytes)):
            raise InvalidInputError("messages must be a list of chat messages")
        counted = tokens.count_messages(model, list(messages))
        prompt = usage_cost(prices, Usage(prompt_tokens=counted))[0]
    return WorstCase(model, prompt, prices.highest_output_rate(), TABLE.max_output_tokens(model))
