"""Bounded storage per request: model names have a length limit, a budget a cap on distinct
models, idempotency entries a fixed size and a window, and the server's store cache a size."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from _service import ThreadServer, database

from budget_manager import BudgetManager, InvalidInputError, TooManyModelsError
from budget_manager.operations import Operations
from budget_manager.records import MAX_MODELS, new_record
from budget_manager.server.projects import Stores
from budget_manager.stores import store_from_url
from budget_manager.stores.sql import SqlStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def service(store_url: str) -> Iterator[ThreadServer]:
    server = ThreadServer(store_url=store_url, api_keys=[], max_models=3, idempotency_ttl=0.5)
    yield server.start()
    server.stop()


def user_url(service: ThreadServer, user: str = "u", project: str = "p") -> str:
    return f"{service.url}/v1/projects/{project}/users/{user}"


def post_cost(service: ThreadServer, **body: Any) -> requests.Response:
    return requests.post(user_url(service) + "/cost", json={"cost": "0.25", **body}, timeout=10)


def spent(service: ThreadServer) -> tuple[float, dict[str, float]]:
    data = requests.get(user_url(service), timeout=10).json()["data"]
    return data["current_cost"], data["model_cost"]


def test_model_names_have_a_length_limit(service: ThreadServer) -> None:
    requests.put(user_url(service), json={"total_budget": 10}, timeout=10).raise_for_status()
    assert post_cost(service, model="m" * 128).status_code == 200
    refused = post_cost(service, model="m" * 129)
    assert refused.status_code == 422 and refused.json()["field"] == "model"
    assert "at most 128" in refused.json()["message"]
    assert spent(service) == (0.25, {"m" * 128: 0.25})


def test_a_budget_caps_its_distinct_models(service: ThreadServer) -> None:
    requests.put(user_url(service), json={"total_budget": 10}, timeout=10).raise_for_status()
    for model in ("a", "b", "c", "a"):
        assert post_cost(service, model=model).status_code == 200
    refused = post_cost(service, model="d", idempotency_key="k-d")
    assert refused.status_code == 422 and refused.json()["field"] == "model"
    assert "cap is 3" in refused.json()["message"]
    assert spent(service) == (1.0, {"a": 0.5, "b": 0.25, "c": 0.25})
    too_many = {"total_budget": 1, "model_cost": {m: 0.1 for m in "abcd"}}
    answer = requests.post(
        service.url + "/set_budget",
        json={"project_name": "p", "user_dict": {"u": too_many}},
        timeout=10,
    )
    assert answer.status_code == 422 and answer.json()["field"] == "user_dict.u.model_cost"
    assert spent(service) == (1.0, {"a": 0.5, "b": 0.25, "c": 0.25})


def test_every_store_caps_distinct_models(store_url: str, tmp_path: Path) -> None:
    for store, limit in (
        (store_from_url(store_url, "cap", max_models=2), 2),
        (store_from_url(f"json:///{tmp_path}/cap.json", "cap", max_models=3), 3),
        (store_from_url(f"json:///{tmp_path}/default.json", "cap"), MAX_MODELS),
    ):
        ops = Operations(store, time.time)
        ops.put("u", new_record(Decimal(1000), None, 0.0))
        for n in range(limit):
            ops.charge("u", f"model-{n}", Decimal(1))
        with pytest.raises(TooManyModelsError, match=f"cap is {limit}") as caught:
            ops.charge("u", "one-more", Decimal(1))
        assert caught.value.field == "model"
        with pytest.raises(InvalidInputError, match="at most 128"):
            ops.charge("u", "x" * 129, Decimal(1))
        with pytest.raises(TooManyModelsError):  # a limit-checked charge checks the cap alike
            ops.charge("u", "one-more", Decimal(1), limit_check=True)
        record = store.get("u")
        assert record is not None and record.current_cost == limit
        assert record.model_cost is not None and len(record.model_cost) == limit
        store.close()
    local = BudgetManager("p", path=tmp_path / "manager.json", max_models=1)
    local.create_budget(total_budget=10, user="u")
    local.update_cost(user="u", model="gpt-4o", input_text="a", output_text="b")
    with pytest.raises(TooManyModelsError):
        local.update_cost(user="u", model="gpt-4o-mini", input_text="a", output_text="b")
    assert list(local.get_model_cost("u")) == ["gpt-4o"]


def test_idempotency_keys_expire_after_the_window(service: ThreadServer, store_url: str) -> None:
    requests.put(user_url(service), json={"total_budget": 10}, timeout=10).raise_for_status()
    assert post_cost(service, idempotency_key="k").status_code == 200
    post_cost(service, cost="1")  # a later charge: a replay answers the record as it is now
    again = post_cost(service, idempotency_key="k")
    assert again.status_code == 200 and again.json()["data"]["current_cost"] == 1.25
    conflict = post_cost(service, cost="0.5", idempotency_key="k")
    assert conflict.status_code == 409 and conflict.json()["field"] == "idempotency_key"
    time.sleep(0.6)  # past the window of 0.5 s: the key is new again
    assert post_cost(service, idempotency_key="k").json()["data"]["current_cost"] == 1.5
    store = store_from_url(store_url, "p", idempotency_ttl=0.5)
    try:
        time.sleep(0.6)
        assert isinstance(store, SqlStore) and store.prune() == 1
    finally:
        store.close()


def test_concurrent_requests_with_one_key_apply_it_once(store_url: str) -> None:
    store = store_from_url(store_url, "race")
    ops = Operations(store, time.time)
    ops.put("u", new_record(Decimal(100), None, 0.0))
    pool = getattr(store.db, "pool", None)
    if pool is not None:  # PostgreSQL: a connection for every thread, so they truly overlap
        pool.resize(8, 16)
        pool.wait()
    start = threading.Barrier(8)
    answers: list[Decimal] = []

    def charge() -> None:
        start.wait()
        record = ops.charge("u", "m", Decimal(1), key="the-key").record
        assert record is not None
        answers.append(record.current_cost)

    threads = [threading.Thread(target=charge) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert answers == [Decimal(1)] * 8
        assert store.get("u").current_cost == 1  # type: ignore[union-attr]
    finally:
        store.close()


def test_idempotency_entries_have_a_fixed_size(store_url: str) -> None:
    store = store_from_url(store_url, "p" * 256)
    assert isinstance(store, SqlStore)
    try:
        ops = Operations(store, time.time)
        ops.put("u" * 256, new_record(Decimal(10**6), None, 0.0))
        for n in range(50):
            model = f"{n:03d}".ljust(128, "m")
            ops.charge("u" * 256, model, Decimal(1), key=f"{n:03d}" * 66)
        with store.db.read() as cur:
            cur.execute(
                "SELECT count(*), max(length(id) + length(request)),"
                " min(length(id) + length(request)) FROM bm_charge_keys"
            )
            assert tuple(cur.fetchone()) == (50, 32, 32)
    finally:
        store.close()


def database_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def test_disk_used_per_cost_post_is_bounded(tmp_path: Path) -> None:
    db = tmp_path / "grow.db"
    server = ThreadServer(store_url=f"sqlite:///{db}", api_keys=[]).start()
    try:
        session = requests.Session()
        url = f"{server.url}/v1/projects/p/users/u"
        session.put(url, json={"total_budget": 10**6}, timeout=10).raise_for_status()
        before = database_bytes(db)
        statuses = set()
        for n in range(400):  # each post names a new long model, as in the report of issue 9
            body = {"cost": 1, "model": f"{n:04d}".ljust(224 if n % 2 else 120, "x")}
            body["idempotency_key"] = uuid.uuid4().hex
            statuses.add(session.post(url + "/cost", json=body, timeout=10).status_code)
        grown = database_bytes(db) - before
    finally:
        server.stop()
    assert statuses == {200, 422}
    assert grown / 400 < 300, f"{grown / 400:.0f} bytes per post"  # the report: 125,000


def test_the_store_cache_is_bounded_and_its_memory_flat(tmp_path: Path) -> None:
    stores = Stores(f"sqlite:///{tmp_path}/cache.db", clock=time.time, max_projects=64)
    try:
        tracemalloc.start()
        for n in range(2_000):
            stores.get(f"project-{n:05d}")
        early = tracemalloc.get_traced_memory()[0]
        for n in range(2_000, 40_000):
            stores.get(f"project-{n:05d}")
        late = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert stores.cached() == 64
        assert late - early < 64 * 1024, late - early
        assert stores.get("project-39999") is stores.get("project-39999")
        with pytest.raises(InvalidInputError, match="project"):
            stores.get("bad\x00name")
    finally:
        asyncio.run(stores.close())


def test_the_service_answers_for_more_projects_than_it_caches(store_url: str) -> None:
    server = ThreadServer(store_url=store_url, api_keys=[], max_projects=4).start()
    try:
        for n in range(12):
            project = f"project-{n}"
            url = f"{server.url}/v1/projects/{project}/users/u"
            requests.put(url, json={"total_budget": 5}, timeout=10).raise_for_status()
            requests.post(url + "/cost", json={"cost": n}, timeout=10).raise_for_status()
        for n in range(12):
            url = f"{server.url}/v1/projects/project-{n}/users/u"
            assert requests.get(url, timeout=10).json()["data"]["current_cost"] == n
        assert server.app.state.stores.cached() == 4
    finally:
        server.stop()


def test_an_idempotency_table_of_the_first_release_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE bm_idempotency (project TEXT, key TEXT, request TEXT, result TEXT,"
            " created_at REAL, PRIMARY KEY (project, key))"
        )
    store = store_from_url(f"sqlite:///{path}", "p")
    store.close()
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "bm_idempotency" not in tables and "bm_charge_keys" in tables
