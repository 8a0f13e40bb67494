"""The Redis store beyond the contract suite: the same outcomes as the Python ledger over random
operations, exact money, one hash tag per project, lost data detected, a Redis stopped and started
again mid-run, scripts reloaded after SCRIPT FLUSH, TLS, Redis Cluster, and races with parents and
expiring holds.

Tests use the shared Redis at 127.0.0.1:6379 under a random key prefix (never flushing it), or a
private ``redis-server`` they start on a free loopback port.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis  # the [redis] extra is in [dev]: a missing one fails, never skips
from conftest import FakeClock, utc
from contract import REDIS_URL, redis_available, require

from budget_manager import BudgetExceededError, BudgetManager, InvalidInputError
from budget_manager.errors import (
    InvalidBudgetError,
    StoreError,
    StoreUnavailableError,
    TooManyModelsError,
    UnknownHoldError,
)
from budget_manager.ledger import Outcome
from budget_manager.operations import Operations
from budget_manager.periods import parse_duration
from budget_manager.records import HoldRecord, UserRecord
from budget_manager.stores import redis_codec
from budget_manager.stores.memory import MemoryStore
from budget_manager.stores.redis import RedisStore

HERE = Path(__file__).resolve().parent


# -- helpers ---------------------------------------------------------------------------------------
@pytest.fixture
def url() -> Iterator[str]:
    """A fresh project space on the shared Redis; its keys are removed afterwards."""
    require("Redis", redis_available())
    prefix = f"bmtest-{uuid.uuid4().hex[:12]}"
    yield f"{REDIS_URL}?prefix={prefix}"
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()


def _keys(url: str) -> list[bytes]:
    prefix = url.split("prefix=", 1)[1]
    client = redis.Redis.from_url(url.split("?", 1)[0])
    try:
        return sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A private redis-server on a loopback port, which tests may stop and start again."""

    def __init__(self, folder: Path, *args: str) -> None:
        require("redis-server", None if shutil.which("redis-server") else "redis-server missing")
        self.folder = folder
        self.args = args
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.folder), "--save", "", "--daemonize", "no"),
                *("--logfile", str(self.folder / "redis.log"), *self.args),
            ],
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.exceptions.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip()

    def shutdown(self) -> None:
        """``redis-cli shutdown nosave``: what an operator or a crash does."""
        self.cli("shutdown", "nosave")
        assert self.process is not None
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def server(folder: Path, *args: str) -> Iterator[Server]:
    running = Server(folder, *args)
    running.start()
    try:
        yield running
    finally:
        running.stop()


# -- the ledger's rules, as the memory store applies them -------------------------------------------
def _money(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.normalize()


def _record(record: UserRecord | None) -> Any:
    if record is None:
        return None
    return (
        _money(record.total_budget),
        _money(record.current_cost),
        {m: _money(c) for m, c in (record.model_cost or {}).items()},
        record.period and record.period.name,
        record.created_at,
        record.last_updated_at,
        record.parent,
        tuple(f.normalize() for f in record.fired),
    )


def _hold(hold: HoldRecord | None) -> Any:
    if hold is None:
        return None
    return (
        hold.hold_id,
        hold.user,
        _money(hold.amount),
        hold.levels,
        hold.expires_at,
        hold.created_at,
        hold.model,
        hold.state,
        _money(hold.settled),
    )


def _outcome(result: Any) -> Any:
    if isinstance(result, Outcome):
        hold = _hold(result.hold)
        return (_record(result.record), hold, result.rolled, result.alerts, result.replayed)
    if isinstance(result, UserRecord):
        return _record(result)
    return result


def _attempt(call: Callable[[], Any]) -> tuple[Any, Any]:
    """What ``call`` answered, comparable between stores, and the raw result (None on error)."""
    try:
        result = call()
    except Exception as exc:
        return ("error", type(exc).__name__, getattr(exc, "user", None)), None
    return ("ok", _outcome(result)), result


THRESHOLDS = (Decimal("0.5"), Decimal("0.8"), Decimal("1"), Decimal("0.333333333333333333"))


def _amount(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(0, 10**6)) / Decimal(10 ** rng.choice((2, 4, 7, 12)))


def test_random_operations_give_the_memory_stores_outcomes(url: str) -> None:
    """Every operation, on random inputs, answers on Redis as the Python ledger answers."""
    rng = random.Random(20240501)
    clock = FakeClock(utc("2024-05-01T10:00:00"))
    memory = Operations(MemoryStore(clock=clock), clock, THRESHOLDS)
    store = RedisStore(url, "differential")
    ours = Operations(store, clock, THRESHOLDS)
    names = ["org", "team", "ann", "bob", "cy"]
    taken: dict[str, tuple[HoldRecord | None, HoldRecord | None]] = {}
    periods = [None, "daily", "monthly", "1h"]
    seen: Counter[str] = Counter()
    for step in range(1500):
        kind = rng.choices(
            ["put", "charge", "hold", "settle", "release", "reset", "roll", "delete", "tick"],
            weights=[8, 20, 25, 20, 6, 2, 3, 2, 10],
        )[0]
        user = rng.choice(names)
        if kind == "tick":
            clock.advance(rng.choice((1, 30, 600, 4000, 90_000)))
            continue
        if kind == "put":
            parent = rng.choice([None, None, *names])
            period = parse_duration(rng.choice(periods))
            budget = Decimal(rng.randrange(1, 400)) / 100
            created = clock.now - rng.choice((0, 3600, 86_400 * 40))
            record = UserRecord(
                budget,
                period=period,
                created_at=created if period else None,
                last_updated_at=created if period else None,
                parent=parent,
            )
            calls = [lambda ops, u=user, r=record: ops.put(u, r.copy())] * 2
        elif kind == "charge":
            model = rng.choice(["m1", "m2", None])
            amount, check = _amount(rng), rng.random() < 0.5
            key = rng.choice([None, None, "k1", "k2"])
            calls = [
                lambda ops, u=user, m=model, a=amount, c=check, k=key: ops.charge(
                    u, m, a, limit_check=c, key=k
                )
            ] * 2
        elif kind == "hold":
            hold_id = f"h{rng.randrange(60)}"
            amount, ttl = _amount(rng), rng.choice((30, 300, 7200))
            model = rng.choice(["m1", None])
            calls = [
                lambda ops, u=user, a=amount, t=ttl, h=hold_id, m=model: ops.hold(
                    u, a, ttl=t, hold_id=h, model=m
                )
            ] * 2
        elif kind in ("settle", "release"):
            hold_id = rng.choice([*taken, "nope"]) if taken else "nope"
            amount, model = _amount(rng), rng.choice(["m1", "m2", None])
            pair = taken.get(hold_id, (None, None))
            known = rng.random() < 0.6
            if kind == "settle":
                calls = [
                    lambda ops, h=hold_id, a=amount, m=model, k=(pair[0] if known else None): (
                        ops.settle(h, a, m, known=k)
                    ),
                    lambda ops, h=hold_id, a=amount, m=model, k=(pair[1] if known else None): (
                        ops.settle(h, a, m, known=k)
                    ),
                ]
            else:
                calls = [lambda ops, h=hold_id: ops.release(h)] * 2
        elif kind == "reset":
            calls = [lambda ops, u=user: ops.reset(u)] * 2
        elif kind == "roll":
            calls = [lambda ops, u=user: ops.roll(u)] * 2
        else:
            calls = [lambda ops, u=user: ops.delete(u)] * 2
        expected, mine = _attempt(lambda c=calls[0]: c(memory))  # type: ignore[misc]
        found, theirs = _attempt(lambda c=calls[1]: c(ours))  # type: ignore[misc]
        assert found == expected, (step, kind, user)
        seen[f"{kind} {expected[0]} {expected[1] if expected[0] == 'error' else ''}".strip()] += 1
        if isinstance(mine, Outcome):
            seen["alerts"] += bool(mine.alerts)
            seen["rolled"] += bool(mine.rolled)
            seen["replayed"] += mine.replayed
        if kind == "hold" and mine is not None and not mine.replayed:
            taken[mine.hold.hold_id] = (mine.hold, theirs.hold)
        if step % 50 == 0:
            assert {u: _record(r) for u, r in ours.records().items()} == {
                u: _record(r) for u, r in memory.records().items()
            }, step
            for name in names:
                assert sorted(map(_hold, ours.holds(name))) == sorted(
                    map(_hold, memory.holds(name))
                ), (step, name)
    store.close()
    # The run went through every path: successes, refusals and conflicts of each kind.
    for case in (
        "put ok",
        "put error HierarchyError",
        "charge ok",
        "charge error BudgetExceededError",
        "charge error UnknownUserError",
        "charge error IdempotencyConflictError",
        "hold ok",
        "hold error BudgetExceededError",
        "hold error IdempotencyConflictError",
        "settle ok",
        "settle error UnknownHoldError",
        "release ok",
        "roll ok",
        "delete ok",
        "delete error HierarchyError",
        "reset ok",
        "alerts",
        "rolled",
        "replayed",
    ):
        assert seen[case] > 0, (case, seen)


def test_replace_all_swaps_the_whole_user_dict_as_the_memory_store_does(url: str) -> None:
    clock = FakeClock(utc("2024-05-01T10:00:00"))
    stores = [
        Operations(MemoryStore(clock=clock), clock),
        Operations(RedisStore(url, "swap"), clock),
    ]
    outcomes = []
    for ops in stores:
        ops.put("org", UserRecord(Decimal(10)))
        ops.put("team", UserRecord(Decimal(1), parent="org"))
        ops.put("ann", UserRecord(Decimal(1), parent="team"))
        ops.put("bob", UserRecord(Decimal(1)))
        ops.hold("ann", Decimal("0.4"), hold_id="h1")
        with pytest.raises(InvalidInputError, match="cycle"):
            ops.replace_all(
                {"a": UserRecord(Decimal(1), parent="b"), "b": UserRecord(Decimal(1), parent="a")}
            )
        assert sorted(ops.records()) == ["ann", "bob", "org", "team"]  # unchanged
        ops.replace_all(
            {
                "org": UserRecord(Decimal(5)),
                "team": UserRecord(Decimal("0.5"), Decimal("0.05"), parent="org"),
                "cy": UserRecord(Decimal(1), parent="team"),
            }
        )
        refused = _attempt(lambda ops=ops: ops.hold("cy", Decimal("0.1")))[
            0
        ]  # team: 0.05 + 0.4 held
        deleted = _attempt(lambda ops=ops: ops.delete("team"))[0]  # cy is its child
        outcomes.append(
            (
                sorted(ops.users()),
                {u: _record(r) for u, r in ops.records().items()},
                sorted(map(_hold, ops.holds("team"))),
                refused,
                deleted,
                _attempt(lambda ops=ops: ops.settle("h1", Decimal("0.3")))[0],
                {u: _record(r) for u, r in ops.records().items()},
            )
        )
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][0] == ["cy", "org", "team"] and outcomes[1][3][1] == "BudgetExceededError"


# -- money -----------------------------------------------------------------------------------------
def test_money_stays_exact_beyond_what_doubles_hold(url: str) -> None:
    bm = BudgetManager("exact", store=url)
    ops = bm._ops
    big = Decimal("900000000000000")  # 9e14 USD: 9e26 units of 1e-12, far past 2^53
    bm.create_budget(total_budget=float(big), user="whale")
    ops.charge("whale", "m", big - Decimal("0.000000000003"))
    for _ in range(2):
        ops.charge("whale", "m", Decimal("0.000000000001"), limit_check=True)
    assert bm.store.get("whale").current_cost == big - Decimal("0.000000000001")  # type: ignore[union-attr]
    ops.charge("whale", "m", Decimal("0.000000000001"), limit_check=True)  # exactly the budget
    with pytest.raises(BudgetExceededError):
        ops.charge("whale", "m", Decimal("0.000000000001"), limit_check=True)
    with pytest.raises(BudgetExceededError):
        ops.hold("whale", Decimal("0.000000000001"))
    record = bm.store.get("whale")
    assert record is not None and record.current_cost == big
    assert record.model_cost == {"m": big}

    bm.create_budget(total_budget=1, user="tenths")
    for _ in range(10):
        ops.charge("tenths", None, Decimal("0.1"), limit_check=True)
    assert bm.store.get("tenths").current_cost == 1  # type: ignore[union-attr]
    with pytest.raises(BudgetExceededError):
        ops.charge("tenths", None, Decimal("0.000000000001"), limit_check=True)


def test_amounts_round_half_even_to_a_trillionth_and_huge_ones_are_refused(url: str) -> None:
    bm = BudgetManager("rounding", store=url)
    ops = bm._ops
    bm.create_budget(total_budget=10, user="ann")
    ops.charge("ann", None, Decimal("0.0000000000005"))  # half a unit: to even (0)
    ops.charge("ann", None, Decimal("0.0000000000015"))  # 1.5 units: to even (2)
    ops.charge("ann", None, Decimal("0.30000000000000004"))  # 0.1 + 0.2 as floats add up
    assert bm.store.get("ann").current_cost == Decimal("0.300000000002")  # type: ignore[union-attr]
    held = ops.hold("ann", Decimal("0.1234567890123456")).hold
    assert held is not None and held.amount == Decimal("0.123456789012")
    with pytest.raises(InvalidBudgetError, match="below"):
        ops.charge("ann", None, Decimal("1e15"))
    with pytest.raises(InvalidBudgetError, match="below"):
        bm.create_budget(total_budget=2e15, user="bob")
    assert bm.store.get("ann").current_cost == Decimal("0.300000000002")  # type: ignore[union-attr]
    assert not bm.is_valid_user("bob")


def test_alerts_fire_once_per_period_exactly_at_the_fraction(url: str) -> None:
    clock = FakeClock(utc("2024-05-01T10:00:00"))
    store = RedisStore(url, "alerts")
    first = Operations(store, clock, (Decimal("0.5"), Decimal("0.333333333333")))
    second = Operations(RedisStore(url, "alerts"), clock, (Decimal("0.50"),))
    first.put("ann", UserRecord(Decimal("3")))
    below = first.charge("ann", None, Decimal("0.999999999998"))
    assert below.alerts == ()
    at = first.charge("ann", None, Decimal("0.000000000001"))  # 0.999999999999 = 3 x 0.333333333333
    assert [a.fraction for a in at.alerts] == [0.333333333333]
    assert at.record is not None and at.record.fired == (Decimal("0.333333333333"),)
    half = second.charge("ann", None, Decimal("0.500000000001"))
    assert [a.fraction for a in half.alerts] == [0.5]
    assert first.charge("ann", None, Decimal("1")).alerts == ()  # 0.5 fired, by another manager
    assert store.get("ann").fired == (Decimal("0.333333333333"), Decimal("0.5"))  # type: ignore[union-attr]


def test_a_budget_takes_at_most_max_models_models_per_period(url: str) -> None:
    clock = FakeClock(utc("2024-05-01T10:00:00"))
    bm = BudgetManager("models", store=url, clock=clock, max_models=2)
    bm.create_budget(total_budget=10, user="ann", duration="daily")
    ops = bm._ops
    ops.charge("ann", "m1", Decimal("0.1"))
    ops.charge("ann", "m2", Decimal("0.1"))
    with pytest.raises(TooManyModelsError, match="cap is 2") as caught:
        ops.charge("ann", "m3", Decimal("0.1"))
    assert caught.value.field == "model"
    hold = bm.reserve("ann", amount=0.5)
    with pytest.raises(TooManyModelsError):
        hold.settle(cost=0.2, model="m3")
    assert hold.settle(cost=0.2, model="m1") == 0.2  # a model already counted is fine
    assert bm.get_model_cost("ann") == {"m1": pytest.approx(0.3), "m2": 0.1}
    clock.advance(86_400)  # a new period: an empty breakdown
    ops.charge("ann", "m3", Decimal("0.1"))
    assert bm.get_model_cost("ann") == {"m3": 0.1}
    with pytest.raises(InvalidInputError, match="max_models"):
        RedisStore(url, "models", max_models=0)


# -- layout ----------------------------------------------------------------------------------------
def test_every_key_of_a_project_shares_one_hash_tag(url: str) -> None:
    from redis.crc import key_slot

    for project in ("plain", "{braces}", "ünï {co:de} 🙂"):
        bm = BudgetManager(project, store=url)
        bm.create_budget(total_budget=10, user="org")
        bm.create_budget(total_budget=5, user="{team}", parent="org", duration="daily")
        bm.create_budget(total_budget=1, user="a:b {c}", parent="{team}")
        bm.reserve("a:b {c}", amount=0.1, hold_id="{h}").settle(cost=0.05)
        bm.reserve("a:b {c}", amount=0.1)
        bm._ops.charge("a:b {c}", "m", Decimal("0.01"), key="{key}")
        bm.close()
    keys = _keys(url)
    by_tag: dict[bytes, set[int]] = {}
    for key in keys:
        tag = key[key.index(b"{") + 1 : key.index(b"}")]
        by_tag.setdefault(tag, set()).add(key_slot(key))
    assert len(by_tag) == 3 and all(len(slots) == 1 for slots in by_tag.values()), by_tag
    assert len(keys) >= 3 * 10


def test_bad_options_are_refused_and_passwords_are_not_shown() -> None:
    with pytest.raises(InvalidInputError, match="prefix"):
        RedisStore("redis://127.0.0.1:6379/0?prefix=a{b}", "p")
    with pytest.raises(InvalidInputError, match="cluster"):
        RedisStore("redis://127.0.0.1:6379/0?cluster=maybe", "p")
    with pytest.raises(InvalidInputError, match="no_such_option"):
        RedisStore("redis://127.0.0.1:6379/0", "p", no_such_option=1)
    with pytest.raises(InvalidBudgetError, match="negative"):
        redis_codec.encode_money(Decimal("-0.5"))
    store = RedisStore("redis://user:secret@127.0.0.1:6379/0", "p")
    assert "secret" not in repr(store) and "***" in repr(store)
    store.close()


def test_holds_and_keys_are_kept_for_a_while_then_expire(url: str) -> None:
    bm = BudgetManager("ttl", store=url)
    bm.create_budget(total_budget=1, user="ann")
    hold = bm.reserve("ann", amount=0.5, ttl=60)
    bm._ops.charge("ann", None, Decimal("0.01"), key="once")
    client = redis.Redis.from_url(url.split("?", 1)[0])
    keys = bm.store.keys  # type: ignore[attr-defined]
    hold_ttl = client.ttl(keys.hold(hold.id))
    assert 60 + redis_codec.HOLD_RETENTION - 5 < hold_ttl <= 60 + redis_codec.HOLD_RETENTION + 1
    assert 0 < client.ttl(keys.key("once")) <= redis_codec.KEY_RETENTION
    assert client.ttl(keys.record("ann")) == -1 and client.ttl(keys.marker) == -1
    client.close()


def test_expired_holds_leave_the_open_set_and_its_sum(url: str) -> None:
    clock = FakeClock(utc("2024-05-01T10:00:00"))
    bm = BudgetManager("expiry", store=url, clock=clock)
    bm.create_budget(total_budget=1, user="team")
    bm.create_budget(total_budget=1, user="ann", parent="team")
    for _ in range(5):
        bm.reserve("ann", amount=0.1, ttl=30)
    with pytest.raises(BudgetExceededError):
        bm.reserve("ann", amount=0.6)
    clock.advance(31)
    hold = bm.reserve("ann", amount=0.6)  # the five expired: purged from both budgets
    client = redis.Redis.from_url(url.split("?", 1)[0])
    keys = bm.store.keys  # type: ignore[attr-defined]
    for name in ("ann", "team"):
        assert client.zcard(keys.open(name)) == 1
        assert client.hget(keys.record(name), "h") == b"0.6"
    hold.settle(cost=0.2)
    for name in ("ann", "team"):
        assert client.zcard(keys.open(name)) == 0 and client.hget(keys.record(name), "h") is None
    client.close()
    assert bm.get_current_cost("team") == pytest.approx(0.2)


def test_a_settle_or_release_from_another_process_reads_the_holds_levels(url: str) -> None:
    bm = BudgetManager("levels", store=url)
    bm.create_budget(total_budget=1, user="team")
    bm.create_budget(total_budget=1, user="ann", parent="team")
    first, second = bm.reserve("ann", amount=0.3), bm.reserve("ann", amount=0.3)
    other = BudgetManager("levels", store=url)  # knows nothing of these holds
    assert other._ops.settle(first.id, Decimal("0.25")).hold.settled == Decimal("0.25")  # type: ignore[union-attr]
    assert other._ops.release(second.id).hold.state == "released"  # type: ignore[union-attr]
    assert other.get_current_cost("team") == 0.25 and other.get_holds("team") == []
    with pytest.raises(UnknownHoldError):
        other._ops.settle("nope", Decimal("1"))


# -- lost data, faults, restarts --------------------------------------------------------------------
def test_lost_data_is_refused_rather_than_started_afresh(url: str) -> None:
    bm = BudgetManager("lost", store=url)
    bm.create_budget(total_budget=1, user="ann")
    bm._ops.charge("ann", None, Decimal("0.25"))
    client = redis.Redis.from_url(url.split("?", 1)[0])
    for key in _keys(url):  # what FLUSHDB does to this project (the shared Redis is not flushed)
        client.delete(key)
    client.close()
    for action in (
        lambda: bm.get_current_cost("ann"),
        lambda: bm._ops.charge("ann", None, Decimal("0.25")),
        lambda: bm.create_budget(total_budget=1, user="ann"),
        lambda: BudgetManager("lost", store=url).get_users(),  # a new manager in this process too
    ):
        with pytest.raises(StoreError, match="lost this project's data"):
            action()
    assert _keys(url) == []  # nothing was written meanwhile


def test_a_marker_replaced_by_a_new_project_is_also_a_loss(url: str) -> None:
    bm = BudgetManager("replaced", store=url)
    bm.create_budget(total_budget=1, user="ann")
    client = redis.Redis.from_url(url.split("?", 1)[0])
    client.set(bm.store.keys.marker, "someone-else")  # type: ignore[attr-defined]
    client.close()
    with pytest.raises(StoreError, match="lost"):
        bm.get_current_cost("ann")


def _race(
    bm: BudgetManager,
    users: list[str],
    stop: threading.Event,
    settled: list[Decimal],
    errors: list[BaseException],
    lock: threading.Lock,
) -> None:
    """Reserve and settle until stopped; a settle that failed is tried again until it answers
    (settles are idempotent), so every cost is recorded once."""
    rng = random.Random()
    while not stop.is_set():
        try:
            hold = bm.reserve(rng.choice(users), amount=0.01, ttl=30)
        except BudgetExceededError:
            continue
        except StoreError as exc:
            with lock:
                errors.append(exc)
            time.sleep(0.01)
            continue
        while True:
            try:
                cost = hold.settle(cost=0.01)
                break
            except StoreError as exc:
                with lock:
                    errors.append(exc)
                if "lost" in str(exc):
                    return
                time.sleep(0.01)
        with lock:
            settled.append(Decimal(str(cost)))


def test_redis_stopped_mid_run_gives_clear_errors_and_no_wrong_totals(tmp_path: Path) -> None:
    """With AOF (appendfsync always): unavailable while down, then every settled cost exactly once;
    without persistence: unavailable while down, then 'lost' instead of empty budgets."""
    for persistent in (True, False):
        folder = tmp_path / ("aof" if persistent else "none")
        folder.mkdir()
        args = ("--appendonly", "yes", "--appendfsync", "always") if persistent else ()
        with server(folder, *args) as running:
            url = f"{running.url}?prefix=restart"
            bm = BudgetManager("restart", store=url)
            bm.create_budget(total_budget=100, user="org")
            bm.create_budget(total_budget=0.5, user="team", parent="org")
            for user in ("ann", "bob"):
                bm.create_budget(total_budget=1, user=user, parent="team")
            settled: list[Decimal] = []
            errors: list[BaseException] = []
            lock, stop = threading.Lock(), threading.Event()
            workers = [
                threading.Thread(
                    target=_race, args=(bm, ["ann", "bob"], stop, settled, errors, lock)
                )
                for _ in range(6)
            ]
            for w in workers:
                w.start()
            time.sleep(0.3)
            running.shutdown()
            time.sleep(0.5)
            with pytest.raises(StoreUnavailableError, match="unavailable"):
                bm.get_current_cost("team")
            down = len(errors)
            running.start()
            time.sleep(0.5 if persistent else 0.2)
            stop.set()
            for w in workers:
                w.join(timeout=30)
            assert down > 0 and all(isinstance(e, StoreError) for e in errors)
            if persistent:
                total = sum(settled, Decimal(0))
                assert 0 < total <= Decimal("0.5")
                assert bm.store.get("team").current_cost == total  # type: ignore[union-attr]
                assert bm.store.get("org").current_cost == total  # type: ignore[union-attr]
                ann, bob = (bm.store.get(u).current_cost for u in ("ann", "bob"))  # type: ignore[union-attr]
                assert ann + bob == total
            else:
                lost = [e for e in errors if "lost" in str(e)]
                assert lost and all(type(e) is not StoreUnavailableError for e in lost)
                with pytest.raises(StoreError, match="lost this project's data"):
                    bm.get_current_cost("team")
            bm.close()


def test_scripts_are_loaded_again_after_a_script_flush(tmp_path: Path) -> None:
    with server(tmp_path) as running:
        bm = BudgetManager("flush", store=f"{running.url}?prefix=p")
        bm.create_budget(total_budget=1, user="ann")
        bm.reserve("ann", amount=0.1).settle(cost=0.1)
        running.cli("script", "flush")
        running.cli("config", "resetstat")
        for _ in range(3):
            bm.reserve("ann", amount=0.1).settle(cost=0.1)
        stats = running.cli("info", "commandstats")
        evals = [line for line in stats.splitlines() if line.startswith("cmdstat_eval:")]
        assert evals and "calls=2," in evals[0]  # hold and settle, once each after the flush
        assert "cmdstat_evalsha:calls=6," in stats
        assert bm.get_current_cost("ann") == pytest.approx(0.4)


def test_rediss_connects_over_tls(tmp_path: Path) -> None:
    require("openssl", None if shutil.which("openssl") else "openssl missing")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    with server(
        tmp_path,
        *("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        *("--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"),
    ):
        url = f"rediss://127.0.0.1:{port}/0?prefix=tls&ssl_ca_certs={cert}"
        bm = BudgetManager("tls", store=url)
        bm.create_budget(total_budget=1, user="ann")
        bm.reserve("ann", amount=0.2).settle(cost=0.15)
        assert BudgetManager("tls", store=url).get_current_cost("ann") == 0.15


# -- races -----------------------------------------------------------------------------------------
def test_threads_and_processes_racing_with_parents_and_expiring_holds(url: str) -> None:
    """Budgets of every size under a parent, holds that lapse mid-race and are released: every
    budget's spend never exceeds it and equals the sum of what the settles returned."""
    bm = BudgetManager("contract", store=url)  # the project contract_worker.py opens
    bm.create_budget(total_budget=0.37, user="org")
    sizes = {"tiny": 0.02, "small": 0.05, "mid": 0.13, "big": 1}
    for user, size in sizes.items():
        bm.create_budget(total_budget=size, user=user, parent="org")
    users = list(sizes)
    settled: dict[str, list[Decimal]] = {u: [] for u in users}
    lock = threading.Lock()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        mine = BudgetManager("contract", store=url)
        for _ in range(40):
            user = rng.choice(users)
            try:
                hold = mine.reserve(user, amount=0.01, ttl=rng.choice((0.05, 30)))
            except BudgetExceededError:
                continue
            if rng.random() < 0.2:
                hold.release()
                continue
            if hold.expires_at - time.time() < 1:
                time.sleep(0.06)  # it lapses, holding nothing any more, and is released late
                hold.release()
                continue
            cost = Decimal(str(hold.settle(cost=rng.choice((0.01, 0.005)))))
            with lock:
                settled[user].append(cost)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    command = [sys.executable, str(HERE / "contract_worker.py"), "redis", url, "race"]
    processes = [
        subprocess.Popen([*command, "big", "20"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in processes:
        out, _ = p.communicate(timeout=120)
        settled["big"] += [Decimal(x) for x in out.split()]
    records = bm.store.records()
    for user in users:
        spent = records[user].current_cost
        assert spent == sum(settled[user], Decimal(0)), user
        assert spent <= records[user].total_budget, user
    org = records["org"].current_cost
    assert org == sum((records[u].current_cost for u in users), Decimal(0))
    assert org <= records["org"].total_budget


def test_runs_on_a_redis_cluster_each_project_on_one_node(tmp_path: Path) -> None:
    nodes = []
    try:
        for n in range(3):
            folder = tmp_path / f"node{n}"
            folder.mkdir()
            node = Server(
                folder,
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-port", str(_free_port())),  # not port + 10000, which may not exist
            )
            node.start()
            nodes.append(node)
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes)),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 20
        while not all("cluster_state:ok" in n.cli("cluster", "info") for n in nodes):
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.1)
        url = f"{nodes[0].url}?prefix=cl&cluster=true"
        projects = [f"project-{i}" for i in range(8)]
        for project in projects:
            bm = BudgetManager(project, store=url)
            bm.create_budget(total_budget=1, user="team")
            bm.create_budget(total_budget=1, user="ann", parent="team")
            bm.reserve("ann", amount=0.2).settle(cost=0.1)
            bm._ops.charge("ann", "m", Decimal("0.05"), key="once")
            assert BudgetManager(project, store=url).get_current_cost("team") == 0.15
            bm.close()
        holding = [int(n.cli("dbsize")) for n in nodes]
        assert sum(1 for count in holding if count) >= 2, holding  # projects spread over nodes
        for project in projects:  # and each project's keys sit on one node
            tag = RedisStore(url, project).keys.base.split(":", 1)[1]
            owners = [n for n in nodes if n.cli("--scan", "--pattern", f"cl:{tag}*")]
            assert len(owners) == 1, (project, owners)
    finally:
        for node in nodes:
            node.stop()
