"""Draw docs/cli-users.svg: ``budget-manager users`` as a terminal shows it.

    python scripts/cli_screenshot.py [--out docs/cli-users.svg]

Seeds a throwaway SQLite store through the library, runs the real command on a
pseudo-terminal (so it draws its rich table, colours included), and has rich record what the
terminal received and save it as SVG.
"""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 104


def seed(store: str) -> None:
    from budget_manager import BudgetManager

    with BudgetManager("acme", store=store) as bm:
        bm.create_budget(500, "research", "monthly")
        bm.create_budget(200, "support", "monthly")
        bm.create_budget(50, "ana", "daily", parent="research")
        bm.create_budget(50, "ben", "daily", parent="research")
        bm.create_budget(20, "cara", "weekly", parent="support")
        bm.create_budget(5, "ci-bot")
        bm.add_cost("ana", "12.4031", model="gpt-4o")
        bm.add_cost("ana", "0.8125", model="claude-sonnet-4-5")
        bm.add_cost("ben", "47.90", model="gpt-4o")
        bm.add_cost("cara", "3.075", model="gpt-4o-mini")
        bm.add_cost("ci-bot", "5", model="gpt-4o-mini")
        bm.reserve("ben", amount=2, ttl=3600)
        bm.reserve("cara", amount=0.5, ttl=3600)


def on_terminal(*args: str) -> str:
    """What the command writes to a terminal WIDTH columns wide."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": str(WIDTH), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    command = [sys.executable, "-m", "budget_manager.cli", *args]
    proc = subprocess.Popen(command, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    if proc.wait() != 0:
        raise SystemExit(shown.decode())
    return shown.decode().replace("\r\n", "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "cli-users.svg"))
    args = parser.parse_args()
    from rich.console import Console
    from rich.text import Text

    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{folder}/budgets.db"
        seed(store)
        shown = on_terminal("users", "--store", store, "--project", "acme")
    with open(os.devnull, "w") as nowhere:
        console = Console(record=True, width=WIDTH, force_terminal=True, file=nowhere)
        console.print(Text("$ budget-manager users --store sqlite:///budgets.db --project acme"))
        console.print(Text.from_ansi(shown.rstrip("\n")))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    console.save_svg(args.out, title="budget-manager users")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
