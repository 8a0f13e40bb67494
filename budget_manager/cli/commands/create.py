"""Create or replace a budget (its spend starts again from zero)."""

from __future__ import annotations

import argparse

from ..base import amount, open_manager
from ..output import Output
from ..views import print_statuses


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", help="whose budget")
    parser.add_argument("--budget", required=True, metavar="USD", help="the budget, in USD")
    parser.add_argument(
        "--duration",
        metavar="PERIOD",
        help="daily, weekly, monthly, yearly or a span such as 12h or 2w (default: never resets)",
    )
    parser.add_argument("--parent", metavar="BUDGET", help="the budget this one also counts in")


def run(args: argparse.Namespace, out: Output) -> int:
    total = amount(args.budget, "--budget")
    with open_manager(args, create=True) as bm:
        bm.create_budget(total, args.user, args.duration, parent=args.parent)
        found = bm.budget_status(args.user)
    print_statuses(out, [found], title=f"Created the budget of {args.user}")
    return 0
