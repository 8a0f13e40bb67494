"""Read a user dict (LiteLLM's ``user_cost.json``, or what ``export`` wrote) into the store,
spend included. Every record is checked first: one bad record and nothing is written."""

from __future__ import annotations

import argparse
import sys

from ...records import loads
from ..base import UserError, open_manager
from ..output import Output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the JSON file to read ('-' for standard input)")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="make the file the whole user dict, in one step (default: budgets not in the "
        "file are kept)",
    )


def run(args: argparse.Namespace, out: Output) -> int:
    if args.file == "-":
        text = sys.stdin.read()
    else:
        with open(args.file, encoding="utf-8") as file:
            text = file.read()
    try:
        user_dict = loads(text)
    except ValueError as exc:
        raise UserError(f"{args.file} is not valid JSON: {exc}") from None
    if not isinstance(user_dict, dict):
        raise UserError(f"{args.file} holds no user dict (a JSON object of user -> record)")
    with open_manager(args, create=True) as bm, out.progress("importing") as progress:
        count = bm.import_users(user_dict, replace=args.replace, progress=progress)
    if out.as_json:
        out.json({"imported": count})
    else:
        out.message(f"imported {count} budget(s) from {args.file}")
    return 0
