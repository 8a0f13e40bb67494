"""The open holds: of one budget (a parent's include those of the users below it), or all."""

from __future__ import annotations

import argparse

from ..base import open_manager
from ..output import Output
from ..views import print_holds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", nargs="?", help="only the holds on this budget")


def run(args: argparse.Namespace, out: Output) -> int:
    with open_manager(args) as bm:
        if args.user is not None and not bm.is_valid_user(args.user):
            bm.budget_status(args.user)  # raises UnknownUserError, naming the project
        found = bm.open_holds(args.user)
    print_holds(out, found, title="Open holds")
    return 0
