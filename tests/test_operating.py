"""The manager methods an operator (and the command line) needs beyond LiteLLM's API: known
costs, statuses, holds by id, ending periods in bulk, and user dicts in and out; on the
synchronous and the asyncio manager, over real stores."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from conftest import utc

from budget_manager import (
    AsyncBudgetManager,
    BudgetManager,
    HierarchyError,
    InvalidInputError,
    UnknownHoldError,
    UnknownUserError,
)

STORES = ["json", "sqlite"]


def open_manager(kind: str, tmp_path, clock=None) -> BudgetManager:
    if kind == "json":
        return BudgetManager("ops", path=tmp_path / "b.json", clock=clock)
    return BudgetManager("ops", store=f"sqlite:///{tmp_path}/b.db", clock=clock)


@pytest.mark.parametrize("kind", STORES)
def test_add_cost_records_an_exact_amount_under_the_model(kind, tmp_path):
    bm = open_manager(kind, tmp_path)
    bm.create_budget(1, "alice")
    bm.add_cost("alice", "0.1", model="gpt-4o")
    bm.add_cost("alice", 0.2, model="gpt-4o")
    answer = bm.add_cost("alice", Decimal("0.000000000001"))
    status = bm.budget_status("alice")
    assert status.spent == Decimal("0.300000000001")
    assert status.model_cost == {"gpt-4o": Decimal("0.3")}
    assert answer["user"]["current_cost"] == pytest.approx(0.300000000001)
    with pytest.raises(InvalidInputError):
        bm.add_cost("alice", "-1")
    with pytest.raises(InvalidInputError):
        bm.add_cost("alice", "abc")
    with pytest.raises(UnknownUserError):
        bm.add_cost("bob", 1)
    assert bm.budget_status("alice").spent == Decimal("0.300000000001")


@pytest.mark.parametrize("kind", STORES)
def test_statuses_count_holds_on_every_budget_they_hold_against(kind, tmp_path, clock):
    bm = open_manager(kind, tmp_path, clock)
    bm.create_budget(100, "team", "monthly")
    bm.create_budget(10, "alice", "daily", parent="team")
    bm.create_budget(5, "bob")
    bm.add_cost("alice", "1.5", model="m")
    hold = bm.reserve("alice", amount=2)
    everyone = bm.budget_statuses()
    assert sorted(everyone) == ["alice", "bob", "team"]
    alice, team, bob = everyone["alice"], everyone["team"], everyone["bob"]
    assert (alice.spent, alice.held, alice.holds, alice.remaining) == (
        Decimal("1.5"),
        Decimal("2"),
        1,
        Decimal("6.5"),
    )
    assert (team.held, team.holds, team.remaining) == (Decimal("2"), 1, Decimal("96.5"))
    assert (bob.holds, bob.period, bob.reset_at, bob.parent) == (0, None, None, None)
    assert alice.parent == "team" and alice.period == "daily"
    assert alice.reset_at == utc("2024-02-01T09:00:00") and alice.period_start == clock()
    assert bm.budget_status("alice") == alice
    assert bm.budget_status("team").remaining == bm.get_remaining_budget("team")
    assert alice.to_dict()["remaining"] == 6.5
    hold.release()
    assert bm.budget_statuses()["team"].holds == 0


@pytest.mark.parametrize("kind", STORES)
def test_a_hold_is_released_by_its_id(kind, tmp_path):
    bm = open_manager(kind, tmp_path)
    bm.create_budget(10, "alice")
    hold = bm.reserve("alice", amount=4)
    assert [h.hold_id for h in bm.open_holds()] == [hold.id]
    released = bm.release_hold(hold.id)
    assert (released.state, released.amount, released.user) == ("released", Decimal("4"), "alice")
    assert bm.open_holds() == [] and bm.get_remaining_budget("alice") == 10
    settled = bm.reserve("alice", amount=1)
    settled.settle(cost=0.5)
    assert bm.release_hold(settled.id).state == "settled"  # left as it was
    assert bm.get_current_cost("alice") == 0.5
    with pytest.raises(UnknownHoldError):
        bm.release_hold("no-such-hold")


@pytest.mark.parametrize("kind", STORES)
def test_reset_expired_starts_every_ended_period_and_counts_them(kind, tmp_path, clock):
    bm = open_manager(kind, tmp_path, clock)
    bm.create_budget(10, "daily", "daily")
    bm.create_budget(10, "monthly", "monthly")
    bm.create_budget(10, "forever")
    for user in ("daily", "monthly", "forever"):
        bm.add_cost(user, 1)
    clock.advance(2 * 86_400)
    seen: list[tuple[int, int]] = []
    assert bm.reset_expired(progress=lambda done, total: seen.append((done, total))) == 1
    assert seen == [(1, 1)]
    assert bm.budget_status("daily").period_start == clock()  # two days on: a new period
    assert bm.store.get("daily").current_cost == 0
    assert bm.store.get("monthly").current_cost == 1
    assert bm.reset_expired() == 0


@pytest.mark.parametrize("kind", STORES)
def test_import_checks_every_record_before_writing_any(kind, tmp_path):
    bm = open_manager(kind, tmp_path)
    bm.create_budget(50, "org")
    bm.create_budget(7, "kept")
    good = {
        "alice": {"total_budget": 10, "current_cost": 0.25, "model_cost": {"gpt-4o": 0.25}},
        "team": {"total_budget": 20, "current_cost": 0, "model_cost": {}, "parent": "org"},
    }
    good["alice"]["parent"] = "team"  # a child before its parent: written parents first
    with pytest.raises(InvalidInputError, match="'broken'"):
        bm.import_users({**good, "broken": {"current_cost": 1}})
    with pytest.raises(HierarchyError, match="nowhere"):
        bm.import_users({**good, "lost": {"total_budget": 1, "parent": "nowhere"}})
    assert sorted(bm.get_users()) == ["kept", "org"]
    seen: list[int] = []
    assert bm.import_users(good, progress=lambda done, total: seen.append(done)) == 2
    assert seen == [1, 2]
    assert sorted(bm.get_users()) == ["alice", "kept", "org", "team"]
    assert bm.budget_status("alice").spent == Decimal("0.25")
    assert bm.budget_status("org").spent == 0  # an imported spend is the record's own
    assert bm.import_users({"only": {"total_budget": 1}}, replace=True) == 1
    assert bm.get_users() == ["only"]


@pytest.mark.parametrize("kind", STORES)
def test_export_is_a_user_dict_that_imports_exactly(kind, tmp_path):
    bm = open_manager(kind, tmp_path)
    bm.create_budget(10, "team", "monthly")
    bm.create_budget(3, "alice", "daily", parent="team")
    bm.add_cost("alice", "0.123456789012", model="gpt-4o")
    text = bm.export_users()
    exported = json.loads(text, parse_float=Decimal)
    assert exported["alice"]["current_cost"] == Decimal("0.123456789012")
    other = BudgetManager("ops", path=tmp_path / "other.json")
    assert other.import_users(exported) == 2
    assert json.loads(other.export_users(), parse_float=Decimal) == exported


def test_the_asyncio_manager_has_the_same_methods(tmp_path, clock):
    async def main() -> None:
        async with AsyncBudgetManager("ops", store=f"sqlite:///{tmp_path}/a.db", clock=clock) as bm:
            assert await bm.import_users({"team": {"total_budget": 5}}) == 1
            await bm.create_budget(2, "alice", "daily", parent="team")
            await bm.add_cost("alice", "0.5", model="m")
            hold = await bm.reserve("alice", amount=1)
            status = await bm.budget_status("alice")
            assert (status.spent, status.held) == (Decimal("0.5"), Decimal("1"))
            assert (await bm.budget_statuses())["team"].holds == 1
            assert [h.hold_id for h in await bm.open_holds("team")] == [hold.id]
            assert (await bm.release_hold(hold.id)).state == "released"
            clock.advance(86_400)
            assert await bm.reset_expired() == 1
            assert '"alice"' in await bm.export_users()

    asyncio.run(main())
