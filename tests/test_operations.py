"""The operations layer: one event per change, policies per budget, and levels that follow the
hierarchy as other processes change it."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from conftest import FakeClock, utc

import budget_manager
from budget_manager import BudgetManager, UnknownModelError, register_model
from budget_manager.events import Event

RESPONSE = {"model": "ops-model", "usage": {"prompt_tokens": 100, "completion_tokens": 0}}


@pytest.fixture(autouse=True)
def _price() -> None:
    register_model({"ops-model": {"input_cost_per_token": 0.0001, "output_cost_per_token": 0.0002}})


def test_every_change_is_announced_with_its_window_and_rolls() -> None:
    clock = FakeClock(utc("2024-01-01T23:00:00"))
    bm = BudgetManager("p", store="memory://", clock=clock)
    events: list[Event] = []
    bm.on_event(events.append)
    bm.create_budget(total_budget=1, user="team", duration="daily", created_at=utc("2024-01-01"))
    bm.create_budget(total_budget=1, user="ann", parent="team")
    bm.update_cost(user="ann", completion_obj=RESPONSE)
    hold = bm.reserve("ann", amount=0.2)
    clock.set("2024-01-02T01:00:00")
    hold.settle(cost=0.1)
    bm.reserve("ann", amount=0.1).release()
    bm.update_cost(user="ann", completion_obj=RESPONSE)
    bm.reset_cost("ann")
    kinds = [e.kind for e in events]
    assert kinds == [
        "create",
        "create",
        "charge",
        "hold",
        "settle",
        "hold",
        "release",
        "charge",
        "reset",
    ]
    charge = events[2]
    assert (charge.user, charge.model, charge.amount) == ("ann", "ops-model", Decimal("0.01"))
    assert events[3].hold_id == hold.id == events[4].hold_id
    assert events[5].rolled == ("team",)  # the first change of Jan 2nd rolled the team's day
    assert events[7].window == (None, None)  # ann's own budget never resets


def test_a_failing_listener_does_not_undo_the_change(caplog: pytest.LogCaptureFixture) -> None:
    bm = BudgetManager("p", store="memory://")

    def broken(event: Event) -> None:
        raise RuntimeError("listener down")

    bm.on_event(broken)
    with caplog.at_level(logging.ERROR, logger="budget_manager"):
        bm.create_budget(total_budget=1, user="ann")
    assert bm.is_valid_user("ann") and "listener" in caplog.text


def test_unknown_models_are_refused_unless_the_budget_allows_them(stub, stub_url) -> None:
    bm = BudgetManager("p", store="memory://")
    bm.create_budget(total_budget=1, user="strict")
    bm.create_budget(total_budget=1, user="lenient", on_unknown_model="allow")
    messages = [{"role": "user", "content": "hi"}]
    before = stub.requests
    with pytest.raises(UnknownModelError):
        bm.completion(user="strict", model="unpriced-model", messages=messages, max_tokens=5)
    assert stub.requests == before
    bm.completion(user="lenient", model="unpriced-model", messages=messages, max_tokens=5)
    assert stub.requests == before + 1
    assert bm.get_current_cost("lenient") == 0 and bm.get_holds("lenient") == []
    assert bm.user_dict["lenient"]["on_unknown_model"] == "allow"
    everyone = BudgetManager("q", store="memory://", on_unknown_model="allow")
    everyone.create_budget(total_budget=1, user="u")
    everyone.reserve("u", model="unpriced-model", max_tokens=5).release()


def test_policies_are_checked() -> None:
    with pytest.raises(ValueError):
        BudgetManager("p", store="memory://", on_store_error="sometimes")  # type: ignore[arg-type]
    bm = BudgetManager("p", store="memory://")
    with pytest.raises(ValueError):
        bm.create_budget(total_budget=1, user="u", on_unknown_model="maybe")  # type: ignore[arg-type]


# -- when the store cannot be reached ------------------------------------------------------------
def _down_service(tmp_path):  # type: ignore[no-untyped-def]
    from _service import ThreadServer

    return ThreadServer(store_url=f"sqlite:///{tmp_path}/svc.db", api_keys=[]).start()


def test_closed_budgets_refuse_calls_while_the_store_is_down(tmp_path, stub, stub_url) -> None:  # type: ignore[no-untyped-def]
    from budget_manager import StoreUnavailableError

    service = _down_service(tmp_path)
    bm = BudgetManager("p", client_type="hosted", api_base=service.url, retries=0)
    bm.create_budget(total_budget=1, user="ann")
    service.stop()
    before = stub.requests
    with pytest.raises(StoreUnavailableError):
        bm.reserve("ann", amount=0.1)
    with pytest.raises(StoreUnavailableError):
        bm.completion(
            user="ann", model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=5
        )
    assert stub.requests == before  # nothing was sent
    service.start()
    assert bm.get_current_cost("ann") == 0 and bm.pending_costs() == 0


def test_open_budgets_let_calls_out_and_charge_them_when_the_store_is_back(
    tmp_path, stub, stub_url, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    service = _down_service(tmp_path)
    bm = BudgetManager("p", client_type="hosted", api_base=service.url, retries=0)
    bm.create_budget(total_budget=1, user="ann", on_store_error="open")
    bm.update_cost(user="ann", completion_obj=RESPONSE)  # the policy is now known here
    service.stop()
    with caplog.at_level(logging.WARNING, logger="budget_manager"):
        response = bm.completion(
            user="ann", model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=5
        )
        with bm.reserve("ann", amount=0.5) as hold:
            hold.settle(cost=0.02)
        bm.update_cost(user="ann", completion_obj=RESPONSE)
    assert "open" in caplog.text and bm.pending_costs() == 3
    assert bm.save_data()["status"] == "pending"
    service.start()
    expected = 2 * 0.01 + 0.02 + budget_manager.completion_cost(response)
    assert bm.save_data() == {"status": "success"}
    assert bm.get_current_cost("ann") == pytest.approx(expected, rel=1e-12)
    assert BudgetManager("q", client_type="hosted", api_base=service.url)  # still serving
    service.stop()


def test_ended_holds_kept_in_memory_are_capped_oldest_first(monkeypatch, clock):
    from budget_manager.stores import memory

    monkeypatch.setattr(memory, "MAX_ENDED_HOLDS", 10)
    bm = BudgetManager("p", store="memory://", clock=clock)
    bm.create_budget(total_budget=100, user="u")
    open_hold = bm.reserve("u", amount=1)
    settled = []
    for _ in range(30):
        hold = bm.reserve("u", amount=1)
        hold.settle(cost=0.5)
        settled.append(hold)
    store = bm.store
    assert isinstance(store, memory.MemoryStore)
    store._state.prune(clock())
    kept = set(store._state.holds)
    assert open_hold.id in kept
    assert kept - {open_hold.id} == {h.id for h in settled[-10:]}
    # A hold forgotten by the store settles again through its handle without a second charge.
    assert settled[0].settle(cost=0.5) == 0.5
    assert bm.get_current_cost("u") == 15.0
