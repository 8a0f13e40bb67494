"""A model's price entry (LiteLLM's format) and what tokens cost at it: N input and N output
tokens with --tokens (default: one million), or one call with --input-tokens and
--output-tokens."""

from __future__ import annotations

import argparse
from typing import Any

from ...costs import model_cost
from ...costs.calculate import usage_cost
from ...costs.table import TABLE
from ...costs.usage import Usage
from ..base import UserError, whole
from ..output import Output, money

PER = 1_000_000
#: Needs no store: only its own --json.
COMMON_OPTIONS = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model name, as calls name it (gpt-4o, openai/gpt-4o)")
    parser.add_argument("--tokens", metavar="N", help=f"price N tokens each way (default: {PER})")
    parser.add_argument("--input-tokens", metavar="N", help="prompt tokens of one call")
    parser.add_argument("--output-tokens", metavar="N", help="completion tokens of one call")
    parser.add_argument(
        "--json", action="store_true", help="print JSON (money as exact decimal strings)"
    )


def run(args: argparse.Namespace, out: Output) -> int:
    prices = TABLE.prices(args.model)  # UnknownModelError, with the closest names
    entry = _entry(args.model)
    call = args.input_tokens is not None or args.output_tokens is not None
    if call and args.tokens is not None:
        raise UserError("give --tokens, or --input-tokens/--output-tokens, not both")
    if call:
        prompt_tokens = whole(args.input_tokens or "0", "--input-tokens")
        output_tokens = whole(args.output_tokens or "0", "--output-tokens")
    else:
        prompt_tokens = output_tokens = whole(args.tokens or str(PER), "--tokens")
    prompt, completion = usage_cost(
        prices, Usage(prompt_tokens=prompt_tokens, completion_tokens=output_tokens)
    )
    rows = [
        ["input", str(prompt_tokens), money(prompt)],
        ["output", str(output_tokens), money(completion)],
    ]
    if call:
        rows.append(["total", str(prompt_tokens + output_tokens), money(prompt + completion)])
    if out.as_json:
        costs = {name: {"tokens": int(tokens), "cost": cost} for name, tokens, cost in rows}
        out.json({"model": args.model, "entry": entry, "cost": costs})
        return 0
    fields = [[key, _shown(value)] for key, value in entry.items()]
    out.table(("field", "value"), fields, title=f"Price entry of {args.model}")
    out.table(("tokens", "count", "cost"), rows, title="Cost (USD)")
    return 0


def _entry(model: str) -> dict[str, Any]:
    """The table entry that prices ``model``: it, or it without its leading segments
    (``provider/name``), aliases followed."""
    parts = model.split("/")
    for i in range(len(parts)):
        name = "/".join(parts[i:])
        if name in model_cost:
            return dict(model_cost[name])
    return {}


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".12g") if abs(value) >= 1e-4 or value == 0 else repr(value)
    return str(value)
