"""Record a cost on a budget: an amount given with --cost, or the price of --input-text and
--output-text for the model."""

from __future__ import annotations

import argparse

from ..base import UserError, amount, open_manager
from ..output import Output
from ..views import print_statuses


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", help="whose spend")
    parser.add_argument("--model", required=True, help="the model the cost is recorded under")
    parser.add_argument("--cost", metavar="USD", help="the cost, in USD")
    parser.add_argument("--input-text", metavar="TEXT", help="the prompt, priced for the model")
    parser.add_argument("--output-text", metavar="TEXT", help="the answer, priced for the model")


def run(args: argparse.Namespace, out: Output) -> int:
    texts = args.input_text is not None or args.output_text is not None
    if (args.cost is None) == (not texts):
        raise UserError("give either --cost, or --input-text and/or --output-text")
    with open_manager(args) as bm:
        if args.cost is not None:
            bm.add_cost(args.user, amount(args.cost, "--cost"), model=args.model)
        else:
            bm.update_cost(
                args.user,
                model=args.model,
                input_text=args.input_text or "",
                output_text=args.output_text or "",
            )
        found = bm.budget_status(args.user)
    print_statuses(out, [found], title=f"Budget of {args.user}")
    return 0
