"""What every command shares: the parser that exits 2 on a usage error, the common options
(``--store``, ``--project``, ``--api-base``, ``--api-key``, ``--json``) with their environment
defaults, the manager they open, and the error a command raises for a user mistake."""

from __future__ import annotations

import argparse
import os
from decimal import Decimal
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from ..manager import BudgetManager

USAGE_ERROR = 2
USER_ERROR = 1
STARTUP_ERROR = 1
DEFAULT_PROJECT = "default"
ENV_STORE = "BUDGET_MANAGER_STORE"
ENV_PROJECT = "BUDGET_MANAGER_PROJECT"
ENV_API_BASE = "BUDGET_MANAGER_API_BASE"
ENV_API_KEY = "BUDGET_MANAGER_API_KEY"


class UserError(Exception):
    """A mistake of the operator's the command reports on one line (exit code 1)."""


class Parser(argparse.ArgumentParser):
    """argparse, exiting with 2 and one line on a usage error."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message} (see --help)\n")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options every command but ``serve`` takes, after the command's name."""
    group = parser.add_argument_group("where the budgets are")
    env = os.environ.get
    group.add_argument(
        "--store",
        default=env(ENV_STORE),
        metavar="URL_OR_FILE",
        help="a JSON file, sqlite:///path.db, postgresql://..., redis://... or an http(s):// "
        f"budget service (default: ${ENV_STORE})",
    )
    group.add_argument(
        "--project",
        default=env(ENV_PROJECT) or DEFAULT_PROJECT,
        help=f"the project whose budgets these are (default: ${ENV_PROJECT}, else "
        f"{DEFAULT_PROJECT!r})",
    )
    group.add_argument(
        "--api-base",
        default=env(ENV_API_BASE),
        metavar="URL",
        help=f"a budget service to use instead of a store (default: ${ENV_API_BASE})",
    )
    group.add_argument(
        "--api-key",
        default=env(ENV_API_KEY),
        metavar="KEY",
        help=f"the service's bearer key (default: ${ENV_API_KEY})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON (money as exact decimal strings, times as ISO 8601 UTC)",
    )


def open_manager(args: argparse.Namespace, *, create: bool = False) -> BudgetManager:
    """The manager of the store or service the common options name. A JSON or SQLite file
    that does not exist is a user error (a mistyped path would read as an empty store)
    unless ``create`` (the commands that write budgets)."""
    from ..manager import BudgetManager

    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    target = args.api_base or args.store
    if not target:
        raise UserError(
            f"no store given: pass --store URL_OR_FILE (or set {ENV_STORE}), or --api-base URL "
            f"for a budget service (or set {ENV_API_BASE})"
        )
    file = _local_file(target)
    if not create and file is not None and not os.path.exists(file):
        raise UserError(f"no store at {file}: create a budget or import a user dict there first")
    if "://" in target:
        return BudgetManager(args.project, store=target, headers=headers)
    return BudgetManager(args.project, path=target)


def _local_file(target: str) -> str | None:
    """The file a JSON path or ``sqlite:///`` URL names (None for other stores)."""
    if "://" not in target:
        return target
    if target.lower().startswith("sqlite:///"):
        path = target[len("sqlite:///") :].split("?", 1)[0]
        return None if path in ("", ":memory:") else path
    return None


def amount(text: str, what: str) -> Decimal:
    """An amount of USD given on the command line, exactly as written (InvalidBudgetError,
    naming ``what``, for anything else: a bad value, not a usage error)."""
    from ..errors import InvalidBudgetError
    from ..money import parse_money

    try:
        return parse_money(text.strip(), what)
    except InvalidBudgetError:
        raise InvalidBudgetError(
            f"{what} must be a number of USD at least 0, got {text!r}"
        ) from None


def whole(text: str, what: str) -> int:
    """A whole number >= 0 given on the command line."""
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{what} must be a whole number, got {text!r}") from None
    if value < 0:
        raise UserError(f"{what} must be at least 0, got {text}")
    return value
