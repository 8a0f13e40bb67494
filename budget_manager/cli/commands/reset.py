"""Zero a user's spend and per-model breakdown (the period is not moved)."""

from __future__ import annotations

import argparse

from ..base import open_manager
from ..output import Output
from ..views import print_statuses


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", help="whose spend")


def run(args: argparse.Namespace, out: Output) -> int:
    with open_manager(args) as bm:
        bm.reset_cost(args.user)
        found = bm.budget_status(args.user)
    print_statuses(out, [found], title=f"Reset the spend of {args.user}")
    return 0
