"""A table of every budget, by name: user, parent, budget, spend, open holds, remaining, period and
next reset."""

from __future__ import annotations

import argparse

from ..base import open_manager
from ..output import Output
from ..views import print_statuses


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own."""


def run(args: argparse.Namespace, out: Output) -> int:
    with open_manager(args) as bm:
        statuses = bm.budget_statuses()
    ordered = [statuses[user] for user in sorted(statuses)]
    print_statuses(out, ordered, title=f"Budgets of {args.project}")
    return 0
