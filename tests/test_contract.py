"""One contract, every store: budgets, holds, periods, hierarchy, idempotency and races behave the
same on memory, JSON, SQLite, PostgreSQL, Redis and through the budget service."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import FakeClock, utc
from contract import CASES, OWN_CASES, SHARED_CASES, Backend, backend

from budget_manager import (
    BudgetExceededError,
    InvalidInputError,
    UnknownUserError,
    register_model,
)
from budget_manager.errors import UnknownHoldError

HERE = Path(__file__).resolve().parent
PRICE = Decimal("0.0001")  # per prompt token of "contract-model"
RESPONSE = {"model": "contract-model", "usage": {"prompt_tokens": 100, "completion_tokens": 0}}
COST = 0.01  # of RESPONSE


@pytest.fixture(autouse=True)
def _price() -> None:
    register_model(
        {"contract-model": {"input_cost_per_token": float(PRICE), "output_cost_per_token": 0.0002}}
    )


def _id(case: tuple[str, str]) -> str:
    return "-".join(case)


@pytest.fixture(params=CASES, ids=_id)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param[0], tmp_path, request.param[1]) as opened:
        yield opened


@pytest.fixture(params=OWN_CASES, ids=_id)
def own_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param[0], tmp_path, request.param[1]) as opened:
        yield opened


@pytest.fixture(params=SHARED_CASES, ids=_id)
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param[0], tmp_path, request.param[1]) as opened:
        yield opened


# -- budgets ---------------------------------------------------------------------------------------
def test_budgets_costs_and_resets(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=1, user="ann", duration="monthly")
    assert bm.is_valid_user("ann") and bm.get_users() == ["ann"]
    assert bm.update_cost(user="ann", completion_obj=RESPONSE)["user"]["current_cost"] == COST
    bm.update_cost(user="ann", completion_obj=RESPONSE)
    assert bm.get_current_cost("ann") == 2 * COST
    assert bm.get_model_cost("ann") == {"contract-model": 2 * COST}
    assert bm.get_remaining_budget("ann") == pytest.approx(1 - 2 * COST)
    assert bm.reset_cost("ann")["user"]["current_cost"] == 0
    with pytest.raises(UnknownUserError):
        bm.update_cost(user="nobody", completion_obj=RESPONSE)
    assert store.manager().get_current_cost("ann") == 0  # another manager sees the same


def test_a_period_rolls_on_the_next_charge(store: Backend) -> None:
    clock = FakeClock(utc("2024-01-31T12:00:00"))
    bm = store.manager(clock=clock)
    bm.create_budget(total_budget=1, user="ann", duration="monthly")
    bm.update_cost(user="ann", completion_obj=RESPONSE)
    clock.set("2024-02-29T12:00:01")  # one calendar month later (clamped), a new period
    assert bm.get_current_cost("ann") == 0
    bm.update_cost(user="ann", completion_obj=RESPONSE)
    assert bm.get_current_cost("ann") == COST
    assert bm.get_reset_at("ann") == utc("2024-03-31T12:00:00")


# -- holds -----------------------------------------------------------------------------------------
def test_a_hold_reserves_settles_and_frees(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=0.05, user="ann")
    hold = bm.reserve("ann", amount=0.03)
    assert hold.amount == 0.03 and hold.expires_at > time.time()
    assert bm.get_remaining_budget("ann") == pytest.approx(0.02)
    assert [h["hold_id"] for h in bm.get_holds("ann")] == [hold.id]
    with pytest.raises(BudgetExceededError):
        bm.reserve("ann", amount=0.03)  # 0.03 held + 0.03 > 0.05
    assert len(bm.get_holds("ann")) == 1  # the refused one holds nothing
    assert hold.settle(cost=0.01) == 0.01
    assert bm.get_current_cost("ann") == 0.01
    assert bm.get_holds("ann") == []
    assert bm.get_remaining_budget("ann") == pytest.approx(0.04)
    assert hold.settle(cost=0.02) == 0.01  # idempotent: the first settle stands
    assert bm.get_current_cost("ann") == 0.01


def test_release_records_nothing_and_unknown_holds_are_errors(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=1, user="ann")
    hold = bm.reserve("ann", amount=0.5)
    hold.release()
    assert bm.get_current_cost("ann") == 0 and bm.get_remaining_budget("ann") == 1
    with pytest.raises(UnknownHoldError):
        bm._ops.release("no-such-hold")


def test_with_block_settles_the_held_amount_or_releases_on_error(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=1, user="ann")
    with bm.reserve("ann", amount=0.2):
        pass  # left without settling: the held amount is recorded
    assert bm.get_current_cost("ann") == 0.2
    with pytest.raises(RuntimeError), bm.reserve("ann", amount=0.3):
        raise RuntimeError("the call failed")
    assert bm.get_current_cost("ann") == 0.2 and bm.get_holds("ann") == []
    with bm.reserve("ann", amount=0.3) as hold:
        hold.settle(RESPONSE)
    assert bm.get_current_cost("ann") == pytest.approx(0.2 + COST)


def test_holds_expire_and_a_late_settle_still_counts(store: Backend) -> None:
    clock = FakeClock(utc("2024-05-01T00:00:00"))
    bm = store.manager(clock=clock)
    bm.create_budget(total_budget=1, user="ann")
    hold = bm.reserve("ann", amount=0.9, ttl=60)
    with pytest.raises(BudgetExceededError):
        bm.reserve("ann", amount=0.2)
    clock.advance(61)
    assert bm.get_holds("ann") == [] and bm.get_remaining_budget("ann") == 1
    other = bm.reserve("ann", amount=0.2)  # the expired hold no longer holds
    assert hold.settle(cost=0.5) == 0.5  # a real cost is never dropped
    other.release()
    assert bm.get_current_cost("ann") == 0.5


def test_a_settle_above_the_hold_is_recorded_with_a_warning(
    store: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=1, user="ann")
    hold = bm.reserve("ann", amount=0.1)
    with caplog.at_level(logging.WARNING, logger="budget_manager"):
        assert hold.settle(cost=0.25) == 0.25
    assert bm.get_current_cost("ann") == 0.25
    assert any("above" in r.getMessage() for r in caplog.records)


def test_a_hold_counts_in_the_period_it_was_taken_in(store: Backend) -> None:
    clock = FakeClock(utc("2024-03-01T23:59:00"))
    bm = store.manager(clock=clock)
    bm.create_budget(total_budget=1, user="ann", duration="daily", created_at=utc("2024-03-01"))
    bm.update_cost(user="ann", completion_obj=RESPONSE)
    hold = bm.reserve("ann", amount=0.5, ttl=600)
    clock.set("2024-03-02T00:01:00")  # the next day
    bm.update_cost(user="ann", completion_obj=RESPONSE)  # rolls the period
    hold.settle(cost=0.3)
    assert bm.get_current_cost("ann") == COST  # the settle went to March 1st


def test_hold_ids_make_taking_a_hold_idempotent(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=1, user="ann")
    first = bm.reserve("ann", amount=0.4, hold_id="req-1")
    again = bm.reserve("ann", amount=0.4, hold_id="req-1")
    assert again.id == first.id and bm.get_remaining_budget("ann") == pytest.approx(0.6)
    with pytest.raises(InvalidInputError):
        bm.reserve("ann", amount=0.1, hold_id="req-1")


def test_worst_case_holds_and_fit(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=1, user="ann")
    messages = [{"role": "user", "content": "hello world"}]
    hold = bm.reserve("ann", model="contract-model", messages=messages, max_tokens=1000)
    prompt = 9 * PRICE  # 9 prompt tokens with the chat framing
    assert hold.amount == pytest.approx(float(prompt + 1000 * Decimal("0.0002")))
    assert hold.max_tokens == 1000
    hold.release()
    bm.update_cost(user="ann", completion_obj={**RESPONSE, "usage": {"prompt_tokens": 9000}})
    fit = bm.reserve("ann", model="contract-model", messages=messages, max_tokens="fit")
    assert fit.max_tokens == int((Decimal("0.1") - prompt) / Decimal("0.0002"))
    assert fit.amount <= 0.1 + 1e-12
    with pytest.raises(BudgetExceededError):
        bm.reserve("ann", model="contract-model", messages=messages, max_tokens="fit")


# -- hierarchy -------------------------------------------------------------------------------------
def test_spend_rolls_up_and_parents_cap_their_children(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=10, user="org")
    bm.create_budget(total_budget=0.05, user="team", parent="org", duration="daily")
    bm.create_budget(total_budget=1, user="ann", parent="team")
    bm.create_budget(total_budget=1, user="bob", parent="team")
    bm.update_cost(user="ann", completion_obj=RESPONSE)
    assert bm.get_current_cost("team") == COST and bm.get_current_cost("org") == COST
    hold = bm.reserve("bob", amount=0.04)
    with pytest.raises(BudgetExceededError) as refused:
        bm.reserve("ann", amount=0.01)  # ann has room; the team does not
    assert refused.value.user == "team"
    assert [h["user"] for h in bm.get_holds("team")] == ["bob"]
    hold.settle(cost=0.02)
    assert bm.get_current_cost("team") == pytest.approx(0.03)
    assert bm.get_current_cost("bob") == 0.02 and bm.get_current_cost("ann") == COST


def test_the_hierarchy_refuses_cycles_missing_parents_depth_and_orphans(store: Backend) -> None:
    bm = store.manager()
    with pytest.raises(InvalidInputError, match="no budget"):
        bm.create_budget(total_budget=1, user="ann", parent="ghost")
    bm.create_budget(total_budget=1, user="l1")
    bm.create_budget(total_budget=1, user="l2", parent="l1")
    bm.create_budget(total_budget=1, user="l3", parent="l2")
    bm.create_budget(total_budget=1, user="l4", parent="l3")
    with pytest.raises(InvalidInputError, match="levels"):
        bm.create_budget(total_budget=1, user="l5", parent="l4")
    with pytest.raises(InvalidInputError, match="cycle"):
        bm.create_budget(total_budget=1, user="l1", parent="l3")
    with pytest.raises(InvalidInputError, match="parent of"):
        bm.delete_budget("l3")
    assert bm.delete_budget("l4") and not bm.is_valid_user("l4")
    assert bm.get_users() == ["l1", "l2", "l3"] or sorted(bm.get_users()) == ["l1", "l2", "l3"]


def test_moving_a_budget_under_a_new_parent_applies_at_once(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=1, user="ann")
    bm.update_cost(user="ann", completion_obj=RESPONSE)  # levels remembered without a parent
    bm.create_budget(total_budget=0.01, user="team")
    other = store.manager()
    other.create_budget(total_budget=1, user="ann", parent="team")
    with pytest.raises(BudgetExceededError):
        bm.reserve("ann", amount=0.02)  # the first manager learns of the new parent


# -- races -----------------------------------------------------------------------------------------
def _race_threads(store: Backend, users: list[str], threads: int = 16) -> list[float]:
    settled: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        bm = store.manager()
        start.wait()
        for _ in range(6):
            try:
                with bm.reserve(users[n % len(users)], amount=0.01) as hold:
                    cost = hold.settle(cost=0.01)
                with lock:
                    settled.append(cost)
            except BudgetExceededError:
                pass

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return settled


def test_threads_racing_never_overspend(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=0.05, user="hot")
    settled = _race_threads(store, ["hot"])
    assert sum(settled) == pytest.approx(0.05) and len(settled) == 5
    assert bm.get_current_cost("hot") == pytest.approx(sum(settled))


def test_children_racing_never_overspend_their_parent(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=0.07, user="team")
    bm.create_budget(total_budget=1, user="ann", parent="team")
    bm.create_budget(total_budget=1, user="bob", parent="team")
    settled = _race_threads(store, ["ann", "bob"])
    assert len(settled) == 7
    assert bm.get_current_cost("team") == pytest.approx(0.07)
    assert bm.get_current_cost("ann") + bm.get_current_cost("bob") == pytest.approx(0.07)


def _worker(store: Backend, *args: str) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        str(HERE / "contract_worker.py"),
        store.kind,
        store.url,
        store.api,
        *args,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def test_processes_racing_never_overspend(shared_store: Backend) -> None:
    bm = shared_store.manager()
    bm.create_budget(total_budget=0.05, user="hot")
    workers = [_worker(shared_store, "race", "hot", "6") for _ in range(4)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    settled = [float(x) for out in outputs for x in out.split()]
    assert len(settled) == 5 and sum(settled) == pytest.approx(0.05)
    assert bm.get_current_cost("hot") == pytest.approx(0.05)


def test_a_killed_holder_leaves_a_hold_that_expires(shared_store: Backend) -> None:
    bm = shared_store.manager()
    bm.create_budget(total_budget=1, user="ann")
    worker = _worker(shared_store, "hold-and-die", "ann", "0.9", "2")
    assert worker.stdout is not None and worker.stdout.readline().strip() == "held"
    worker.kill()
    worker.wait()
    with pytest.raises(BudgetExceededError):
        bm.reserve("ann", amount=0.2)
    time.sleep(2.2)
    bm.reserve("ann", amount=0.2).release()


def test_keyed_charges_count_once(store: Backend) -> None:
    bm = store.manager()
    bm.create_budget(total_budget=1, user="ann")
    for _ in range(3):
        bm._ops.charge("ann", "m", Decimal("0.1"), key="same")
    assert bm.get_current_cost("ann") == 0.1
    with pytest.raises(InvalidInputError):
        bm._ops.charge("ann", "m", Decimal("0.2"), key="same")


# -- history ---------------------------------------------------------------------------------------
def test_the_history_keeps_every_change_in_order(store: Backend) -> None:
    clock = FakeClock(utc("2024-03-10T12:00:00"))
    bm = store.manager(clock=clock)
    bm.create_budget(total_budget=10, user="team")
    bm.create_budget(total_budget=5, user="ann", duration="daily", parent="team")
    clock.advance(60)
    bm.update_cost(user="ann", completion_obj=RESPONSE)
    clock.advance(60)
    hold = bm.reserve("ann", amount=0.5)
    clock.advance(1)
    hold.settle(cost=0.2)
    clock.advance(60)
    bm.reserve("ann", amount=0.1, model="m2").release()
    bm.reset_cost("ann")
    clock.set("2024-03-11T12:00:01")
    bm.reset_on_duration("ann")
    bm.create_budget(total_budget=1, user="gone")
    bm.delete_budget("gone")

    events = bm.history()
    assert [(e.kind, e.user) for e in events] == [
        ("create", "team"),
        ("create", "ann"),
        ("charge", "ann"),
        ("hold", "ann"),
        ("settle", "ann"),
        ("hold", "ann"),
        ("release", "ann"),
        ("reset", "ann"),
        ("roll", "ann"),
        ("create", "gone"),
        ("delete", "gone"),
    ]
    day = (utc("2024-03-10T12:00:00"), utc("2024-03-11T12:00:00"))
    create, charge, held, settled, _, released = events[1:7]
    assert create.amount == Decimal(5) and (create.window_start, create.window_end) == day
    assert charge.time == utc("2024-03-10T12:01:00") and charge.model == "contract-model"
    assert charge.cost == Decimal("0.01") and charge.tokens == {"prompt": 100}
    assert (charge.window_start, charge.window_end) == day
    assert held.amount == Decimal("0.5") and held.cost == 0 and held.hold_id == hold.id
    assert settled.cost == Decimal("0.2") and settled.hold_id == hold.id
    assert settled.time == utc("2024-03-10T12:02:01") and settled.window_start == day[0]
    assert released.amount == Decimal("0.1") and released.cost == 0 and released.model == "m2"
    roll = events[8]
    assert (roll.window_start, roll.window_end) == (day[1], day[1] + 86_400)
    assert events[2].to_dict()["cost"] == 0.01


def test_history_filters_and_reports(store: Backend) -> None:
    clock = FakeClock(utc("2024-03-10T12:00:00"))
    bm = store.manager(clock=clock)
    for user in ("ann", "bob"):
        bm.create_budget(total_budget=100, user=user)
    for day in range(3):
        clock.set(f"2024-03-{10 + day}T12:00:00")
        bm.update_cost(user="ann", completion_obj=RESPONSE)
        bm.update_cost(user="bob", model="gpt-4o-mini", input_text="hi", output_text="there")
        with bm.reserve("bob", amount=1) as hold:
            hold.settle(cost=0.5)
    clock.set("2024-03-12T18:00:00")
    assert [e.user for e in bm.history(user="ann")] == ["ann"] * 4  # a create, three charges
    assert {e.model for e in bm.history(model="gpt-4o-mini")} == {"gpt-4o-mini"}
    since = bm.history(since=utc("2024-03-11T00:00:00"), until=utc("2024-03-12T00:00:00"))
    assert [e.kind for e in since] == ["charge", "charge", "hold", "settle"]
    assert [e.kind for e in bm.history(since="1d")] == ["charge", "charge", "hold", "settle"]
    latest = bm.history(limit=2)
    assert [e.kind for e in latest] == ["hold", "settle"] and bm.history(limit=0) == []
    report = bm.spend_report(by="user")
    assert report["ann"] == pytest.approx(3 * COST)
    assert report["bob"] == pytest.approx(bm.get_current_cost("bob"))
    assert bm.spend_report(since="1d", by="day") == pytest.approx(
        {"2024-03-12": COST + report["bob"] / 3}
    )
    by_model = bm.spend_report(by="model")
    assert set(by_model) == {"contract-model", "gpt-4o-mini", "(none)"}
    with pytest.raises(InvalidInputError):
        bm.history(since="yesterday")
    with pytest.raises(InvalidInputError):
        bm.spend_report(by="week")  # type: ignore[arg-type]


def test_the_history_keeps_events_for_its_retention(own_store: Backend) -> None:
    clock = FakeClock(utc("2024-03-01T00:00:00"))
    bm = own_store.manager(clock=clock, history_retention="2d")
    bm.create_budget(total_budget=1_000, user="ann")
    for _ in range(1_100):  # past every store's pruning interval
        clock.advance(300)
        bm.update_cost(user="ann", completion_obj=RESPONSE)
    bm.save_data()
    events = bm.history()
    newest = events[-1].time
    assert newest == clock.now
    assert all(e.time >= newest - 3 * 86_400 for e in events)  # whole days kept at most
    assert len(events) >= 2 * 86_400 / 300  # the last two days are all there


# -- alerts ----------------------------------------------------------------------------------------
def test_alerts_fire_once_per_period_for_users_and_their_parents(store: Backend) -> None:
    clock = FakeClock(utc("2024-03-10T12:00:00"))
    bm = store.manager(clock=clock)
    bm.create_budget(total_budget=0.08, user="team", duration="daily")
    bm.create_budget(total_budget=0.04, user="ann", duration="daily", parent="team")
    alerts: list = []
    assert bm.on_threshold((0.5, 1.0), callback=alerts.append) == alerts.append
    bm.reserve("ann", amount=0.01).settle(cost=0.01)
    bm.update_cost(user="ann", completion_obj=RESPONSE)  # ann: 0.02 of 0.04
    assert [(a.user, a.fraction, a.spent, a.budget) for a in alerts] == [("ann", 0.5, 0.02, 0.04)]
    hold = bm.reserve("ann", amount=0.02)  # a hold crosses nothing until it settles
    assert len(alerts) == 1
    hold.settle(cost=0.02)  # ann: 0.04 of 0.04, team: 0.04 of 0.08
    assert sorted((a.user, a.fraction) for a in alerts[1:]) == [("ann", 1.0), ("team", 0.5)]
    day = utc("2024-03-10T12:00:00")  # the period began when the budget was made
    assert {a.period_start for a in alerts} == {day}
    other: list = []
    bm2 = store.manager(clock=clock)
    bm2.on_threshold([1.0], callback=other.append)
    bm2.update_cost(user="ann", completion_obj=RESPONSE)  # 1.0 of ann already fired this period
    assert other == [] and len(alerts) == 3
    clock.advance(86_400)
    bm.update_cost(user="ann", completion_obj=RESPONSE)
    bm.update_cost(user="ann", completion_obj=RESPONSE)  # a new period: 0.5 fires again
    assert [(a.user, a.fraction, a.period_start) for a in alerts[3:]] == [
        ("ann", 0.5, day + 86_400)
    ]


def test_processes_crossing_thresholds_alert_exactly_once(shared_store: Backend) -> None:
    bm = shared_store.manager()
    bm.create_budget(total_budget=0.2, user="team")
    bm.create_budget(total_budget=0.1, user="ann", parent="team")
    bm.create_budget(total_budget=0.1, user="bob", parent="team")
    workers = [_worker(shared_store, "alerts", user, "8") for user in ("ann", "bob") * 2]
    lines = [line for w in workers for line in w.communicate(timeout=120)[0].split("\n")]
    settled = [float(line) for line in lines if line and not line.startswith("alert")]
    assert len(settled) == 20 and bm.get_current_cost("team") == pytest.approx(0.2)
    assert sorted(line for line in lines if line.startswith("alert")) == sorted(
        f"alert {user} {fraction}"
        for user in ("ann", "bob", "team")
        for fraction in ("0.5", "0.8", "1.0")
    )


def test_bad_thresholds_are_refused(store: Backend) -> None:
    bm = store.manager()
    for bad in [(), (0,), (-0.5,), ("x",), (True,), "0.5", (float("nan"),), (101,)]:
        with pytest.raises(InvalidInputError):
            bm.on_threshold(bad, callback=print)
    with pytest.raises(InvalidInputError):
        bm.on_threshold((0.5,), callback="not callable")  # type: ignore[arg-type]


def test_reset_expired_starts_every_ended_period_once(store: Backend) -> None:
    clock = FakeClock(utc("2024-03-10T12:00:00"))
    bm = store.manager(clock=clock)
    bm.create_budget(total_budget=1, user="team", duration="daily")
    bm.create_budget(total_budget=1, user="ann", duration="daily", parent="team")
    bm.create_budget(total_budget=1, user="bob", duration="weekly")
    bm.update_cost(user="ann", completion_obj=RESPONSE)
    assert bm.reset_expired() == 0
    clock.advance(86_400)
    seen: list[tuple[int, int]] = []
    assert bm.reset_expired(progress=lambda done, total: seen.append((done, total))) == 2
    assert seen[-1] == (2, 2) and bm.get_current_cost("team") == 0
    clock.advance(6 * 86_400)
    assert bm.reset_expired() == 3  # without progress: one roll_all in the store
    assert bm.reset_expired() == 0
    bm.update_cost(user="bob", completion_obj=RESPONSE)
    clock.advance(7 * 86_400)
    bm.update_budget_all_users()
    assert bm.get_current_cost("bob") == 0
