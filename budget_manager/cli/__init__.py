"""budget-manager: see and change budgets from the command line, and run the budget service.

Each command is a module of :mod:`budget_manager.cli.commands` with ``add_arguments(parser)``
and ``run(args, out) -> exit code``, imported only when it runs; :data:`COMMANDS` lists them.
Adding a command is one module and one line here. Exit codes: 0 success, 1 a user error (one
line on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NamedTuple

from .base import USAGE_ERROR, USER_ERROR, Parser, UserError, add_common_options

PROG = "budget-manager"


class Command(NamedTuple):
    """A command: the module that implements it and one line on what it does."""

    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "users": Command("users", "a table of every budget: spend, holds, remaining, next reset"),
    "show": Command("show", "one budget, with its per-model spend and open holds"),
    "create": Command("create", "create or replace a budget"),
    "add-cost": Command("add_cost", "record a cost (given, or priced from text)"),
    "reset": Command("reset", "zero a user's spend"),
    "reset-expired": Command("reset_expired", "start a new period for every ended one"),
    "holds": Command("holds", "list the open holds (of one budget, or all)"),
    "release": Command("release", "free a hold"),
    "export": Command("export", "write the user dict as JSON (LiteLLM's format) or CSV"),
    "import": Command("import_", "read a user dict, such as LiteLLM's user_cost.json"),
    "report": Command("report", "spend from the history, by user, model or day"),
    "prices": Command("prices", "a model's price entry, and what tokens cost"),
    "serve": Command("serve", "run the budget service (needs the [server] extra)"),
}


def load(name: str) -> ModuleType:
    """The module of command ``name``."""
    return importlib.import_module(f"{__name__}.commands.{COMMANDS[name].module}")


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of command ``name``, with its options and the common ones."""
    module = load(name)
    parser = Parser(prog=f"{PROG} {name}", description=module.__doc__)
    module.add_arguments(parser)
    if getattr(module, "COMMON_OPTIONS", True):
        add_common_options(parser)
    return parser


def usage() -> str:
    """The top-level help: the commands and what they do."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [options]", "", (__doc__ or "").splitlines()[0], ""]
    lines += ["commands:"]
    lines += [f"  {name.ljust(width)}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", f"'{PROG} COMMAND --help' shows a command's options."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; the exit code."""
    given = list(sys.argv[1:] if argv is None else argv)
    if not given:
        sys.stderr.write(usage())
        return USAGE_ERROR
    name = given[0]
    if name in ("-h", "--help"):
        sys.stdout.write(usage())
        return 0
    if name == "--version":
        from .. import __version__

        print(f"{PROG} {__version__}")
        return 0
    if name not in COMMANDS:
        choices = ", ".join(COMMANDS)
        print(f"{PROG}: unknown command {name!r} (choose from {choices})", file=sys.stderr)
        return USAGE_ERROR
    args = command_parser(name).parse_args(given[1:])
    return run(name, args)


def run(name: str, args: argparse.Namespace) -> int:
    """Run a parsed command; a user error is one line on stderr and exit code 1."""
    from ..errors import BudgetManagerError
    from .output import Output

    module = load(name)
    try:
        return int(module.run(args, Output(as_json=getattr(args, "json", False))))
    except BrokenPipeError:  # the reader (head, less) went away: not an error of ours
        return 0
    except (UserError, BudgetManagerError, OSError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: {text}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        return 130
