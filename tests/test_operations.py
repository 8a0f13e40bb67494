"""The operations layer: one event per change, policies per budget, and levels that follow the
hierarchy as other processes change it."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from conftest import FakeClock, utc

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
