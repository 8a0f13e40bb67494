"""Spend from the history (charges and settled holds), summed by user, model or UTC day."""

from __future__ import annotations

import argparse
import contextlib

from ...history import totals
from ..base import open_manager
from ..output import Output, money


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        metavar="SPAN",
        help="how far back: a span such as 7d, 12h, 2w, or epoch seconds (default: all the "
        "history kept)",
    )
    parser.add_argument(
        "--by", choices=("user", "model", "day"), default="user", help="(default: %(default)s)"
    )


def run(args: argparse.Namespace, out: Output) -> int:
    since: str | float | None = args.since
    if since is not None:
        with contextlib.suppress(ValueError):  # else a span such as 7d
            since = float(since)
    with open_manager(args) as bm:
        events = bm.history(since=since)
    spend = totals(events, args.by)
    keys = sorted(spend) if args.by == "day" else sorted(spend, key=lambda k: (-spend[k], k))
    if out.as_json:
        out.json({key: money(spend[key]) for key in keys})
    else:
        title = f"Spend by {args.by}" + (f" since {args.since} ago" if args.since else "")
        out.table((args.by, "spent"), [[key, money(spend[key])] for key in keys], title=title)
    return 0
