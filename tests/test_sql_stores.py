"""SQLite and PostgreSQL stores through the operations layer: exact money, periods exactly as the
memory store rolls them, idempotent keyed charges, limit checks, separate projects, and many
processes charging one user."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from _service import pg_database
from conftest import FakeClock, utc

from budget_manager import BudgetExceededError, BudgetManager, UnknownUserError
from budget_manager.errors import IdempotencyConflictError
from budget_manager.operations import Operations
from budget_manager.periods import parse_duration
from budget_manager.records import new_record
from budget_manager.stores import BudgetStore, store_from_url
from budget_manager.stores.memory import MemoryStore

HERE = Path(__file__).resolve().parent


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/budgets.db"
    else:
        with pg_database() as url:
            yield url


@pytest.fixture
def store(store_url: str) -> Iterator[BudgetStore]:
    s = store_from_url(store_url, "proj")
    yield s
    s.close()


def test_put_get_charge_exact(store: BudgetStore) -> None:
    ops = Operations(store, FakeClock(utc("2024-02-01T00:00")))
    ops.put("ann", new_record(Decimal(10), parse_duration("monthly"), utc("2024-01-31T00:00")))
    for _ in range(1000):
        ops.charge("ann", "gpt-4o", Decimal("0.0001725"))
    record = store.get("ann")
    assert record is not None
    assert record.current_cost == Decimal("0.1725")
    assert record.model_cost == {"gpt-4o": Decimal("0.1725")}
    assert store.users() == ["ann"]
    assert store.get("nobody") is None
    with pytest.raises(UnknownUserError):
        ops.charge("nobody", None, Decimal(1))


def test_periods_roll_as_the_memory_store_does(store: BudgetStore) -> None:
    clock = FakeClock(utc("2024-01-31T09:00"))
    ours, reference = Operations(store, clock), Operations(MemoryStore(), clock)
    for ops in (ours, reference):
        ops.put("bob", new_record(Decimal(5), parse_duration("monthly"), clock.now))
    for when in ("2024-02-10", "2024-02-29T09:00", "2024-03-05", "2024-03-31T09:00", "2025-01-01"):
        clock.set(when)
        got = ours.charge("bob", "m", Decimal("0.5"))
        expected = reference.charge("bob", "m", Decimal("0.5"))
        assert got.record == expected.record and got.rolled == expected.rolled
        assert store.get("bob") == reference.get("bob")


def test_idempotent_charge_applies_once(store: BudgetStore) -> None:
    ops = Operations(store, FakeClock(0.0))
    ops.put("cy", new_record(Decimal(1), None, 0.0))
    first = ops.charge("cy", "m", Decimal("0.25"), key="k1")
    again = ops.charge("cy", "m", Decimal("0.25"), key="k1")
    assert first.record == again.record and again.replayed
    assert store.get("cy").current_cost == Decimal("0.25")  # type: ignore[union-attr]
    with pytest.raises(IdempotencyConflictError):
        ops.charge("cy", "m", Decimal("0.5"), key="k1")


def test_limit_checked_charges_refuse_and_change_nothing(store: BudgetStore) -> None:
    ops = Operations(store, FakeClock(0.0))
    ops.put("di", new_record(Decimal(1), None, 0.0))
    ops.charge("di", None, Decimal("0.75"), limit_check=True)
    with pytest.raises(BudgetExceededError):
        ops.charge("di", None, Decimal("0.5"), limit_check=True)
    assert store.get("di").current_cost == Decimal("0.75")  # type: ignore[union-attr]


def test_projects_are_separate_and_replace_all_is_whole(store_url: str) -> None:
    a, b = store_from_url(store_url, "a"), store_from_url(store_url, "b")
    try:
        a.put("u1", new_record(Decimal(1), None, 0.0))
        b.put("u1", new_record(Decimal(2), None, 0.0))
        a.replace_all({"u2": new_record(Decimal(3), None, 0.0)})
        assert a.users() == ["u2"]
        assert b.get("u1").total_budget == Decimal(2)  # type: ignore[union-attr]
        assert a.delete("u2") and not a.delete("u2")
    finally:
        a.close()
        b.close()


def test_manager_over_a_sql_store(store_url: str, clock: object) -> None:
    m = BudgetManager("mgr", store=store_url, clock=clock)  # type: ignore[arg-type]
    m.create_budget(total_budget=10, user="eve", duration="daily")
    m.update_cost(user="eve", model="gpt-4o", input_text="hi", output_text="there")
    assert m.get_current_cost("eve") > 0
    m.reset_cost("eve")
    assert m.get_current_cost("eve") == 0
    assert m.save_data() == {"status": "success"}
    m.close()


def test_processes_charging_one_user_lose_nothing(store_url: str) -> None:
    s = store_from_url(store_url, "procs")
    s.put("hot", new_record(Decimal(1000), None, 0.0))
    code = (
        "import sys, time; from decimal import Decimal\n"
        "from budget_manager.operations import Operations\n"
        "from budget_manager.stores import store_from_url\n"
        "ops = Operations(store_from_url(sys.argv[1], 'procs'), time.time)\n"
        "for _ in range(250): ops.charge('hot', 'm', Decimal('0.0001725'))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url]) for _ in range(8)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    assert s.get("hot").current_cost == Decimal("0.0001725") * 2000  # type: ignore[union-attr]
    s.close()
