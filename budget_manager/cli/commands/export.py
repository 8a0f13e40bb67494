"""Write every budget: as JSON, the user dict in LiteLLM's ``user_cost.json`` format (what
``import`` reads), or as CSV, one row per user."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from decimal import Decimal
from typing import Any

from ...money import to_text
from ...records import loads, quote
from ..base import open_manager
from ..output import Output

CSV_COLUMNS = (
    "user",
    "total_budget",
    "current_cost",
    "period",
    "duration",
    "created_at",
    "last_updated_at",
    "parent",
    "model_cost",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=("json", "csv"), default="json", help="(default: %(default)s)"
    )
    parser.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")


def run(args: argparse.Namespace, out: Output) -> int:
    with open_manager(args) as bm, out.progress("exporting") as progress:
        text = bm.export_users()
        if args.format == "csv":
            text = to_csv(loads(text), progress)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    with open(args.output, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    # One line per user in both forms, after a header line (CSV) or between braces (JSON).
    count = text.count("\n") - (1 if args.format == "csv" else 2)
    count = max(count, 0)
    if out.as_json:
        out.json({"exported": count, "output": args.output, "format": args.format})
    else:
        out.message(f"exported {count} budget(s) to {args.output}")
    return 0


def to_csv(user_dict: dict[str, Any], progress: Any) -> str:
    """The user dict as CSV with a header row; amounts exact, ``model_cost`` a JSON object."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    total = len(user_dict)
    for done, (user, record) in enumerate(user_dict.items(), 1):
        writer.writerow([user, *(_cell(record, key) for key in CSV_COLUMNS[1:])])
        progress(done, total)
    return buffer.getvalue()


def _cell(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if key == "model_cost":
        items = (value or {}).items()
        return "{" + ", ".join(f"{quote(m)}: {_number(c)}" for m, c in items) + "}"
    return "" if value is None else _number(value)


def _number(value: Any) -> str:
    return to_text(value) if isinstance(value, Decimal) else str(value)
