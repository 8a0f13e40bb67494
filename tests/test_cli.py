"""``budget-manager``: every command run as operators run it (the real entry point, in a child
process) over a JSON file, SQLite, PostgreSQL and Redis, its output forms (tab-separated when piped,
--json, CSV, rich tables on a terminal) and its exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from contract import store_url

from budget_manager import BudgetManager

ENV_NAMES = (
    "BUDGET_MANAGER_STORE",
    "BUDGET_MANAGER_PROJECT",
    "BUDGET_MANAGER_API_BASE",
    "BUDGET_MANAGER_API_KEY",
)


def clean_env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return {**env, **more}


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    """``python -m budget_manager.cli ARGS`` with stdout piped."""
    return subprocess.run(
        [sys.executable, "-m", "budget_manager.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env if env is not None else clean_env(),
        timeout=120,
    )


def ok(*args: str, **options) -> str:
    run = cli(*args, **options)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "", run.stderr
    return run.stdout


def fails(code: int, *args: str, **options) -> str:
    """The one line a failing command prints on stderr."""
    run = cli(*args, **options)
    assert run.returncode == code, (run.stdout, run.stderr)
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stdout == ""
    return run.stderr


def rows(tsv: str) -> list[dict[str, str]]:
    """A tab-separated table (header line first) as dicts."""
    lines = tsv.splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


@pytest.fixture(params=["json", "sqlite", "postgresql", "redis"])
def store(request, tmp_path) -> Iterator[str]:
    if request.param == "json":
        yield str(tmp_path / "budgets.json")
        return
    with store_url(request.param, tmp_path) as url:
        yield url


def library(store: str, project: str = "default") -> BudgetManager:
    if "://" in store:
        return BudgetManager(project, store=store)
    return BudgetManager(project, path=store)


def test_every_command_over_a_store(store, tmp_path):
    s = ("--store", store)
    ok("create", "team", "--budget", "100", "--duration", "monthly", *s)
    created = rows(
        ok("create", "alice", "--budget", "10", "--duration", "daily", "--parent", "team", *s)
    )
    assert created == [
        {
            "user": "alice",
            "parent": "team",
            "budget": "10",
            "spent": "0",
            "held": "0",
            "holds": "0",
            "remaining": "10",
            "period": "daily",
            "next_reset": created[0]["next_reset"],
        }
    ]
    assert created[0]["next_reset"].endswith("Z")
    ok("add-cost", "alice", "--model", "gpt-4o", "--cost", "0.0125", *s)
    priced = rows(
        ok(
            "add-cost",
            "alice",
            "--model",
            "gpt-4o-mini",
            "--input-text",
            "hi",
            "--output-text",
            "hello there",
            *s,
        )
    )
    assert Decimal(priced[0]["spent"]) > Decimal("0.0125")

    hold = library(store).reserve("alice", amount=2, ttl=600)
    users = {r["user"]: r for r in rows(ok("users", *s))}
    assert users["alice"]["held"] == "2" and users["alice"]["holds"] == "1"
    assert users["team"]["held"] == "2" and users["team"]["spent"] == priced[0]["spent"]
    assert Decimal(users["alice"]["remaining"]) == 10 - Decimal(priced[0]["spent"]) - 2

    shown = json.loads(ok("show", "alice", "--json", *s))
    assert shown["model_cost"]["gpt-4o"] == "0.0125" and shown["parent"] == "team"
    assert [h["hold_id"] for h in shown["holds"]] == [hold.id]
    piped_show = ok("show", "alice", *s)
    assert "gpt-4o\t0.0125" in piped_show and hold.id in piped_show

    assert [r["hold_id"] for r in rows(ok("holds", *s))] == [hold.id]
    assert [r["budgets"] for r in rows(ok("holds", "team", *s))] == ["alice,team"]
    assert "released hold" in ok("release", hold.id, *s)
    assert rows(ok("holds", *s)) == []
    assert json.loads(ok("release", hold.id, "--json", *s))["state"] == "released"

    by_model = json.loads(ok("report", "--since", "7d", "--by", "model", "--json", *s))
    assert by_model["gpt-4o"] == "0.0125" and set(by_model) == {"gpt-4o", "gpt-4o-mini"}
    by_user = rows(ok("report", "--since", "1h", *s))
    assert by_user == [{"user": "alice", "spent": priced[0]["spent"]}]
    assert len(rows(ok("report", "--by", "day", *s))) == 1

    exported = json.loads(ok("export", "--format", "json", *s), parse_float=Decimal)
    assert exported["alice"]["model_cost"]["gpt-4o"] == Decimal("0.0125")
    table = list(csv.DictReader(io.StringIO(ok("export", "--format", "csv", *s))))
    assert {r["user"]: r["parent"] for r in table} == {"alice": "team", "team": ""}
    alice = next(r for r in table if r["user"] == "alice")
    assert json.loads(alice["model_cost"], parse_float=Decimal)["gpt-4o"] == Decimal("0.0125")

    out = tmp_path / "export.json"
    assert "exported 2 budget(s)" in ok("export", "--output", str(out), *s)
    copy = f"sqlite:///{tmp_path}/copy.db"
    assert "imported 2 budget(s)" in ok("import", str(out), "--store", copy)
    assert rows(ok("users", "--store", copy)) == rows(ok("users", *s))

    assert rows(ok("reset", "alice", *s))[0]["spent"] == "0"
    assert ok("reset-expired", *s) == "reset 0 budget(s) whose period had ended\n"
    assert json.loads(ok("reset-expired", "--json", *s)) == {"reset": 0}


def test_reset_expired_counts_the_ended_periods(store):
    bm = library(store)
    import time

    for n in range(3):
        bm.create_budget(1, f"old-{n}", "daily", created_at=time.time() - 3 * 86_400)
    bm.create_budget(1, "current", "daily")
    bm.update_cost("old-0", model="gpt-4o", input_text="hello", output_text="world")
    bm.close()
    assert json.loads(ok("reset-expired", "--json", "--store", store)) == {
        "reset": 2
    }  # old-0 was charged, which started its new period
    assert json.loads(ok("reset-expired", "--json", "--store", store)) == {"reset": 0}


def test_the_environment_names_the_store_and_the_project(tmp_path):
    env = clean_env(BUDGET_MANAGER_STORE=f"sqlite:///{tmp_path}/b.db", BUDGET_MANAGER_PROJECT="ops")
    ok("create", "alice", "--budget", "5", env=env)
    assert [r["user"] for r in rows(ok("users", env=env))] == ["alice"]
    assert rows(ok("users", "--project", "other", env=env)) == []  # options beat the environment
    assert library(f"sqlite:///{tmp_path}/b.db", "ops").get_users() == ["alice"]
    assert "no store given" in fails(1, "users")


def test_exit_codes(tmp_path):
    s = ("--store", f"sqlite:///{tmp_path}/b.db")
    ok("create", "alice", "--budget", "5", *s)
    # user errors: 1, one line
    assert "'bob'" in fails(1, "show", "bob", *s)
    assert "'bob'" in fails(1, "add-cost", "bob", "--model", "gpt-4o", "--cost", "1", *s)
    assert "'bob'" in fails(1, "holds", "bob", *s)
    assert "no hold 'nope'" in fails(1, "release", "nope", *s)
    assert "--budget" in fails(1, "create", "x", "--budget", "-1", *s)
    assert "--budget" in fails(1, "create", "x", "--budget", "ten", *s)
    assert "fortnightly" in fails(
        1, "create", "x", "--budget", "1", "--duration", "fortnightly", *s
    )
    assert "--cost" in fails(1, "add-cost", "alice", "--model", "gpt-4o", "--cost", "NaN", *s)
    assert "either --cost" in fails(1, "add-cost", "alice", "--model", "gpt-4o", *s)
    assert "gpt-4x" in fails(1, "add-cost", "alice", "--model", "gpt-4x", "--input-text", "a", *s)
    assert "gpt-4x" in fails(1, "prices", "gpt-4x")
    assert "has no budget" in fails(1, "create", "y", "--budget", "1", "--parent", "ghost", *s)
    assert "not valid JSON" in fails(1, "import", "-", *s, stdin="{nope")
    assert "No such file" in fails(1, "import", str(tmp_path / "missing.json"), *s)
    assert "127.0.0.1:1" in fails(1, "users", "--store", "redis://127.0.0.1:1/0")
    assert "127.0.0.1:1" in fails(1, "users", "--api-base", "http://127.0.0.1:1")
    missing = tmp_path / "typo.json"
    assert "no store at" in fails(1, "users", "--store", str(missing))
    assert "no store at" in fails(1, "holds", "--store", f"sqlite:///{tmp_path}/typo.db")
    assert not missing.exists() and not (tmp_path / "typo.db").exists()
    assert library(s[1]).get_users() == ["alice"]  # nothing changed
    # usage errors: 2
    assert "unknown command 'frobnicate'" in fails(2, "frobnicate")
    assert "required: --budget" in fails(2, "create", "x", *s)
    assert "unrecognized arguments" in fails(2, "users", "--colour", *s)
    assert "invalid choice" in fails(2, "report", "--by", "week", *s)
    run = cli()
    assert run.returncode == 2 and "commands:" in run.stderr
    assert "reset-expired" in ok("--help")
    assert "--store" in ok("users", "--help")


def test_import_of_a_file_litellm_wrote(tmp_path, monkeypatch):
    import litellm

    monkeypatch.chdir(tmp_path)
    theirs = litellm.BudgetManager(project_name="p")
    theirs.create_budget(total_budget=10, user="daily", duration="daily")
    theirs.create_budget(total_budget=25.5, user="monthly", duration="monthly")
    theirs.create_budget(total_budget=3, user="forever")
    for user in ("daily", "monthly", "forever"):
        theirs.update_cost(user=user, model="gpt-4o", input_text="hello " * 50, output_text="ok")
    theirs.save_data()
    written = json.loads(Path("user_cost.json").read_text())
    s = ("--store", f"sqlite:///{tmp_path}/b.db")
    assert "imported 3 budget(s)" in ok("import", "user_cost.json", *s)
    users = {u["user"]: u for u in json.loads(ok("users", "--json", *s))}
    assert set(users) == set(written)
    for user, record in written.items():
        assert Decimal(users[user]["budget"]) == Decimal(str(record["total_budget"]))
        assert float(users[user]["spent"]) == pytest.approx(record["current_cost"], rel=1e-12)
        for model, cost in record["model_cost"].items():
            assert float(users[user]["model_cost"][model]) == pytest.approx(cost, rel=1e-12)
    assert users["monthly"]["period"] == "monthly" and users["forever"]["period"] is None


def test_a_bad_record_in_an_import_changes_nothing(tmp_path):
    s = ("--store", f"sqlite:///{tmp_path}/b.db")
    ok("create", "kept", "--budget", "1", *s)
    bad = json.dumps({"good": {"total_budget": 1}, "bad": {"total_budget": "lots"}})
    assert "'bad'" in fails(1, "import", "-", *s, stdin=bad)
    assert "'bad'" in fails(1, "import", "-", "--replace", *s, stdin=bad)
    assert [r["user"] for r in rows(ok("users", *s))] == ["kept"]


def test_an_import_of_100000_users(tmp_path):
    users = {
        f"user-{n}": {"total_budget": 10, "current_cost": 0.25, "model_cost": {"gpt-4o": 0.25}}
        for n in range(100_000)
    }
    path = tmp_path / "big.json"
    path.write_text(json.dumps(users))
    store = f"sqlite:///{tmp_path}/big.db"
    assert ok("import", str(path), "--replace", "--store", store) == (
        f"imported 100000 budget(s) from {path}\n"
    )
    bm = library(store)
    assert len(bm.get_users()) == 100_000
    assert bm.budget_status("user-99999").spent == Decimal("0.25")
    lines = ok("export", "--format", "csv", "--store", store).splitlines()
    assert len(lines) == 100_001 and lines[-1].startswith("user-99999,10,0.25,")


def test_prices_shows_the_entry_and_exact_costs():
    data = json.loads(
        ok("prices", "gpt-4o", "--input-tokens", "1000", "--output-tokens", "200", "--json")
    )
    assert data["entry"]["input_cost_per_token"] == 2.5e-06
    assert Decimal(data["cost"]["total"]["cost"]) == Decimal("0.0045")
    out = ok("prices", "openai/gpt-4o", "--tokens", "1000000")
    assert "input_cost_per_token\t2.5e-06" in out
    assert "input\t1000000\t2.5\n" in out and "output\t1000000\t10\n" in out
    assert "--tokens" in fails(1, "prices", "gpt-4o", "--tokens", "-5")
