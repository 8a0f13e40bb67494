"""Free a hold without recording a cost."""

from __future__ import annotations

import argparse

from ..base import open_manager
from ..output import Output
from ..views import hold_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hold_id", help="the hold's id (see the holds command)")


def run(args: argparse.Namespace, out: Output) -> int:
    with open_manager(args) as bm:
        hold = bm.release_hold(args.hold_id)
    if out.as_json:
        out.json({**hold_data(hold), "state": hold.state})
    elif hold.state == "released":
        out.message(f"released hold {hold.hold_id} of {hold.user} ({hold.amount} USD)")
    else:
        out.message(f"hold {hold.hold_id} of {hold.user} was already {hold.state}; nothing changed")
    return 0
