"""One budget: its figures, its spend per model in the current period, and its open holds."""

from __future__ import annotations

import argparse

from ..base import open_manager
from ..output import Output, money
from ..views import HOLD_COLUMNS, hold_data, hold_row, print_statuses, status_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", help="whose budget")


def run(args: argparse.Namespace, out: Output) -> int:
    with open_manager(args) as bm:
        found = bm.budget_status(args.user)
        holds = bm.open_holds(args.user)
    if out.as_json:
        out.json({**status_data(found), "holds": [hold_data(h) for h in holds]})
        return 0
    print_statuses(out, [found], title=f"Budget of {found.user}")
    costs = sorted(found.model_cost.items(), key=lambda item: (-item[1], item[0]))
    out.table(("model", "spent"), [[m, money(c)] for m, c in costs], title="Spend per model")
    out.table(HOLD_COLUMNS, [hold_row(h) for h in holds], title="Open holds")
    return 0
