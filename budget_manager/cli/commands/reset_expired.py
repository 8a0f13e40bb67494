"""Start a new period, from zero spend, for every budget whose period has ended."""

from __future__ import annotations

import argparse

from ..base import open_manager
from ..output import Output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own."""


def run(args: argparse.Namespace, out: Output) -> int:
    with open_manager(args) as bm, out.progress("resetting ended periods") as progress:
        count = bm.reset_expired(progress=progress)
    if out.as_json:
        out.json({"reset": count})
    else:
        out.message(f"reset {count} budget(s) whose period had ended")
    return 0
