"""``budget-manager`` on a terminal (a real pseudo-terminal): rich tables with the [cli] extra,
aligned plain text without rich; and the commands over a budget service."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from _service import ProcessServer
from test_cli import clean_env, cli, fails, ok, rows

HIDE_RICH = (
    "import sys\n"
    "sys.modules['rich'] = None\n"
    "from budget_manager.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def on_terminal(*args: str, code: str | None = None) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; (exit code, what it showed)."""
    command = (
        [sys.executable, "-c", code, *args]
        if code
        else [sys.executable, "-m", "budget_manager.cli", *args]
    )
    leader, follower = pty.openpty()
    env = clean_env(COLUMNS="160", LINES="50", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return proc.wait(timeout=60), shown.decode("utf-8", "replace")


def seeded(tmp_path) -> str:
    store = f"sqlite:///{tmp_path}/b.db"
    ok("create", "team", "--budget", "100", "--duration", "monthly", "--store", store)
    ok("create", "alice", "--budget", "10", "--parent", "team", "--store", store)
    ok("add-cost", "alice", "--model", "gpt-4o", "--cost", "1.25", "--store", store)
    return store


def test_a_terminal_gets_rich_tables(tmp_path):
    store = seeded(tmp_path)
    code, shown = on_terminal("users", "--store", store)
    assert code == 0, shown
    assert "━" in shown or "─" in shown  # rich's box drawing
    assert "Budgets of default" in shown
    for cell in ("alice", "team", "1.25", "8.75", "98.75", "monthly"):
        assert cell in shown
    code, shown = on_terminal("import", "-", "--store", store)  # stdin is not JSON
    assert code == 1 and "not valid JSON" in shown and "Traceback" not in shown


def test_without_rich_a_terminal_gets_plain_aligned_tables(tmp_path):
    store = seeded(tmp_path)
    code, shown = on_terminal("users", "--store", store, code=HIDE_RICH)
    assert code == 0, shown
    lines = [line for line in shown.replace("\r", "").splitlines() if line]
    assert lines[0] == "Budgets of default"
    assert lines[1].split() == [
        "user",
        "parent",
        "budget",
        "spent",
        "held",
        "holds",
        "remaining",
        "period",
        "next_reset",
    ]
    assert lines[2].split()[:7] == ["alice", "team", "10", "1.25", "0", "0", "8.75"]
    assert lines[1].index("budget") == lines[2].index("10")  # columns line up
    assert "━" not in shown and "─" not in shown and "\t" not in shown


def test_without_rich_every_command_still_works(tmp_path):
    store = seeded(tmp_path)
    for args in (
        ("show", "alice"),
        ("holds",),
        ("report",),
        ("prices", "gpt-4o"),
        ("export", "--format", "csv"),
    ):
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                HIDE_RICH,
                *args,
                *(("--store", store) if args[0] != "prices" else ()),
            ],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert run.returncode == 0 and run.stderr == "", (args, run.stderr)
    code, shown = on_terminal("import", "-", "--store", store, code=HIDE_RICH)
    assert code == 1 and "not valid JSON" in shown


def test_the_commands_over_a_budget_service(tmp_path):
    server = ProcessServer(f"sqlite:///{tmp_path}/svc.db", keys=("secret-key",)).start()
    try:
        env = clean_env(
            BUDGET_MANAGER_API_BASE=server.url,
            BUDGET_MANAGER_API_KEY="secret-key",
            BUDGET_MANAGER_PROJECT="ops",
        )
        ok("create", "team", "--budget", "50", "--duration", "weekly", env=env)
        ok("create", "alice", "--budget", "5", "--parent", "team", env=env)
        ok("add-cost", "alice", "--model", "gpt-4o", "--cost", "0.5", env=env)
        users = {r["user"]: r for r in rows(ok("users", env=env))}
        assert users["alice"]["spent"] == "0.5" and users["team"]["remaining"] == "49.5"
        assert json.loads(ok("report", "--by", "model", "--json", env=env)) == {"gpt-4o": "0.5"}
        assert "'bob'" in fails(1, "show", "bob", env=env)
        exported = ok("export", env=env)
        assert "imported 2" in ok(
            "import", "-", "--store", f"sqlite:///{tmp_path}/copy.db", stdin=exported
        )
        assert ok("reset-expired", env=env) == "reset 0 budget(s) whose period had ended\n"
        assert "no hold 'nope'" in fails(1, "release", "nope", env=env)
        wrong = {**env, "BUDGET_MANAGER_API_KEY": "wrong"}
        run = cli("users", env=wrong)
        assert run.returncode == 1 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    finally:
        server.stop()


def test_a_long_import_draws_a_progress_bar_on_a_terminal(tmp_path):
    users = {f"user-{n}": {"total_budget": 1} for n in range(30_000)}
    path = tmp_path / "users.json"
    path.write_text(json.dumps(users))
    code, shown = on_terminal("import", str(path), "--store", f"sqlite:///{tmp_path}/b.db")
    assert code == 0, shown
    assert "importing" in shown  # the bar's label, drawn while it ran
    assert "imported 30000 budget(s)" in shown
    piped = ok("import", str(path), "--store", f"sqlite:///{tmp_path}/c.db", "--replace")
    assert piped == f"imported 30000 budget(s) from {path}\n"  # no bar when piped
