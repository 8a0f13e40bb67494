"""The budget service over real HTTP on 127.0.0.1: protocol, atomic operations, keys, validation,
concurrency, and a SIGKILL in the middle of the load."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from _service import ProcessServer, ThreadServer, pg_database

from budget_manager.records import loads

HERE = Path(__file__).resolve().parent
PRICE = Decimal("0.0001725")
KEYS = ("admin-key", "team-key=team|shared")
ADMIN = {"Authorization": "Bearer admin-key"}
TEAM = {"Authorization": "Bearer team-key"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    db = tmp_path_factory.mktemp("svc") / "budgets.db"
    server = ThreadServer(store_url=f"sqlite:///{db}", api_keys=KEYS, max_body_bytes=64 * 1024)
    yield server.start()
    server.stop()


def call(
    service: ThreadServer, method: str, path: str, body: Any = None, headers: Any = ADMIN
) -> requests.Response:
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    return requests.request(method, service.url + path, data=data, headers=hdrs, timeout=10)


def user_url(project: str, user: str) -> str:
    return f"/v1/projects/{project}/users/{user}"


def cost(service: ThreadServer, project: str, user: str, **body: Any) -> requests.Response:
    return call(service, "POST", user_url(project, user) + "/cost", body)


# -- protocol ----------------------------------------------------------------------------------
def test_litellm_protocol_round_trip(service: ThreadServer) -> None:
    answer = call(service, "POST", "/get_budget", {"project_name": "empty-project"})
    assert answer.status_code == 200 and answer.json()["status"] == "error"
    user_dict = {
        "a": {"total_budget": 10, "current_cost": 0.5, "model_cost": {"gpt-4o": 0.5}},
        "b": {"total_budget": 3, "duration": 7, "created_at": 1.7e9, "last_updated_at": 1.7e9},
    }
    answer = call(service, "POST", "/set_budget", {"project_name": "proto", "user_dict": user_dict})
    assert answer.json() == {"status": "success"}
    data = call(service, "POST", "/get_budget", {"project_name": "proto"}).json()
    assert data["status"] == "success"
    assert data["data"]["a"]["current_cost"] == 0.5
    assert data["data"]["b"]["duration"] == 7
    # a new dict replaces the old one whole
    call(
        service,
        "POST",
        "/set_budget",
        {"project_name": "proto", "user_dict": {"c": {"total_budget": 1}}},
    )
    assert list(call(service, "POST", "/get_budget", {"project_name": "proto"}).json()["data"]) == [
        "c"
    ]


def test_atomic_operations(service: ThreadServer) -> None:
    caps = call(service, "GET", "/v1/capabilities").json()
    assert caps["atomic"] is True and "add_cost" in caps["operations"]
    put = call(service, "PUT", user_url("ops", "ann"), {"total_budget": "5", "duration": "monthly"})
    assert put.status_code == 200 and put.json()["data"]["current_cost"] == 0
    for _ in range(3):
        assert cost(service, "ops", "ann", cost="0.0001725", model="gpt-4o").status_code == 200
    got = loads(call(service, "GET", user_url("ops", "ann")).content)["data"]
    assert got["current_cost"] == PRICE * 3 and got["model_cost"] == {"gpt-4o": PRICE * 3}
    assert call(service, "GET", "/v1/projects/ops/users").json()["users"] == ["ann"]
    assert (
        call(service, "POST", user_url("ops", "ann") + "/reset").json()["data"]["current_cost"] == 0
    )
    assert call(service, "POST", user_url("ops", "ann") + "/roll").status_code == 200
    assert call(service, "DELETE", user_url("ops", "ann")).json()["deleted"] is True
    assert call(service, "GET", user_url("ops", "ann")).status_code == 404
    assert cost(service, "ops", "ann", cost=1).status_code == 404


def test_idempotent_retry_is_not_counted_twice(service: ThreadServer) -> None:
    call(service, "PUT", user_url("idem", "u"), {"total_budget": 1})
    first = cost(service, "idem", "u", cost=0.25, idempotency_key="abc")
    again = cost(service, "idem", "u", cost=0.25, idempotency_key="abc")
    assert first.json()["data"] == again.json()["data"] and again.json()["replayed"] is True
    assert call(service, "GET", user_url("idem", "u")).json()["data"]["current_cost"] == 0.25
    reused = cost(service, "idem", "u", cost=0.5, idempotency_key="abc")
    assert reused.status_code == 409 and reused.json()["field"] == "idempotency_key"


def test_within_budget_refuses_with_409(service: ThreadServer) -> None:
    call(service, "PUT", user_url("hold", "u"), {"total_budget": 1})
    assert cost(service, "hold", "u", cost="0.9", within_budget=True).status_code == 200
    refused = cost(service, "hold", "u", cost="0.2", within_budget=True)
    assert refused.status_code == 409 and refused.json()["status"] == "error"
    assert call(service, "GET", user_url("hold", "u")).json()["data"]["current_cost"] == 0.9


# -- keys --------------------------------------------------------------------------------------
def test_requests_without_a_valid_key_get_401_and_change_nothing(service: ThreadServer) -> None:
    call(service, "PUT", user_url("team", "u"), {"total_budget": 1})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "admin-key"}):
        for method, path, body in (
            ("POST", user_url("team", "u") + "/cost", {"cost": 1}),
            ("PUT", user_url("team", "u"), {"total_budget": 99}),
            ("POST", "/set_budget", {"project_name": "team", "user_dict": {}}),
            ("POST", "/get_budget", {"project_name": "team"}),
            ("DELETE", user_url("team", "u"), None),
            ("GET", "/v1/capabilities", None),
            ("POST", "/set_budget", "not json at all"),
        ):
            answer = call(service, method, path, body, headers=headers)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.json()["status"] == "error"
    record = call(service, "GET", user_url("team", "u")).json()["data"]
    assert record["total_budget"] == 1 and record["current_cost"] == 0
    assert requests.get(service.url + "/health", timeout=5).status_code == 200


def test_keys_limited_to_projects_get_403_elsewhere(service: ThreadServer) -> None:
    assert (
        call(service, "PUT", user_url("team", "v"), {"total_budget": 2}, headers=TEAM).status_code
        == 200
    )
    call(service, "PUT", user_url("other", "v"), {"total_budget": 2})
    for method, path, body in (
        ("POST", user_url("other", "v") + "/cost", {"cost": 1}),
        ("PUT", user_url("other", "v"), {"total_budget": 5}),
        ("POST", "/set_budget", {"project_name": "other", "user_dict": {}}),
        ("POST", "/get_budget", {"project_name": "other"}),
        ("GET", "/v1/projects/other/users", None),
    ):
        answer = call(service, method, path, body, headers=TEAM)
        assert answer.status_code == 403 and answer.json()["field"] == "project", path
    assert call(service, "GET", user_url("other", "v")).json()["data"]["current_cost"] == 0
    assert (
        call(service, "POST", "/get_budget", {"project_name": "other"}).json()["data"]["v"][
            "total_budget"
        ]
        == 2
    )


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cost": -1}, "cost"),
        ({"cost": "NaN"}, "cost"),
        ('{"cost": NaN}', "cost"),
        ('{"cost": Infinity}', "cost"),
        ({"cost": "1e400"}, "cost"),
        ({"cost": True}, "cost"),
        ({"cost": [1]}, "cost"),
        ({}, "cost"),
        ({"cost": 1, "model": 5}, "model"),
        ({"cost": 1, "idempotency_key": ""}, "idempotency_key"),
        ({"cost": 1, "surprise": 1}, "surprise"),
        ("[1, 2", "body"),
        ("[]", "body"),
    ],
)
def test_malformed_costs_get_422_naming_the_field(
    service: ThreadServer, body: Any, field: str
) -> None:
    call(service, "PUT", user_url("val", "u"), {"total_budget": 1})
    answer = cost_raw(service, body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field and answer.json()["status"] == "error"
    assert call(service, "GET", user_url("val", "u")).json()["data"]["current_cost"] == 0


def cost_raw(service: ThreadServer, body: Any) -> requests.Response:
    return call(service, "POST", user_url("val", "u") + "/cost", body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"total_budget": -5}, "total_budget"),
        ({"total_budget": "abc"}, "total_budget"),
        ({"total_budget": 1, "duration": "fortnightly"}, "duration"),
        ({"total_budget": 1, "duration": 7}, "duration"),
        ({"total_budget": 1, "created_at": "yesterday"}, "created_at"),
        ({"total_budget": 1, "created_at": 1e300}, "created_at"),
    ],
)
def test_malformed_budgets_get_422_naming_the_field(
    service: ThreadServer, body: Any, field: str
) -> None:
    answer = call(service, "PUT", user_url("val", "w"), body)
    assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    assert call(service, "GET", user_url("val", "w")).status_code == 404


def test_bad_user_dicts_are_refused_whole(service: ThreadServer) -> None:
    good = {"total_budget": 1}
    call(service, "POST", "/set_budget", {"project_name": "whole", "user_dict": {"keep": good}})
    deep: Any = 1
    for _ in range(40):
        deep = {"x": deep}
    for user_dict, field in (
        ({"new": good, "bad": {"total_budget": -1}}, "user_dict.bad"),
        ({"new": good, "bad": {"current_cost": 1}}, "user_dict.bad"),
        ({"new": good, "bad": {"total_budget": 1, "duration": "often"}}, "user_dict.bad"),
        ({"new": good, "bad": {"total_budget": 1, "extra": deep}}, "user_dict.bad"),
        ({"new": good, "bad": [1]}, "user_dict.bad"),
        ([1], "user_dict"),
    ):
        answer = call(
            service, "POST", "/set_budget", {"project_name": "whole", "user_dict": user_dict}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"].startswith(field), answer.text
    assert list(call(service, "POST", "/get_budget", {"project_name": "whole"}).json()["data"]) == [
        "keep"
    ]


def test_oversized_and_deeply_nested_bodies_are_refused(service: ThreadServer) -> None:
    huge = {
        "project_name": "whole",
        "user_dict": {f"u{i}": {"total_budget": 1} for i in range(5000)},
    }
    answer = call(service, "POST", "/set_budget", huge)
    assert answer.status_code == 413 and answer.json()["field"] == "body"
    nested = '{"project_name": ' + "[" * 20000 + "]" * 20000 + "}"
    answer = call(service, "POST", "/get_budget", nested)
    assert 400 <= answer.status_code < 500 and answer.json()["field"] == "body"
    assert list(call(service, "POST", "/get_budget", {"project_name": "whole"}).json()["data"]) == [
        "keep"
    ]


def test_unknown_routes_share_the_error_shape(service: ThreadServer) -> None:
    answer = call(service, "GET", "/nowhere")
    assert answer.status_code == 404 and answer.json()["status"] == "error"


def test_openapi_documents_one_error_shape(service: ThreadServer) -> None:
    schema = call(service, "GET", "/openapi.json").json()
    cost_op = schema["paths"]["/v1/projects/{project}/users/{user}/cost"]["post"]
    for code in ("401", "403", "404", "409", "413", "422"):
        ref = cost_op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody")
    assert "HTTPValidationError" not in schema["components"]["schemas"]


# -- the CLI -------------------------------------------------------------------------------------
def test_cli_refuses_to_expose_an_unauthenticated_service(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "budget_manager.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--store",
            f"sqlite:///{tmp_path}/x.db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 2 and "without API keys" in run.stderr


# -- many processes, and SIGKILL -----------------------------------------------------------------
def run_workers(url: str, project: str, user: str, count: int, key: str | None) -> None:
    extra = [key] if key else []
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "hosted_worker.py"),
                url,
                project,
                user,
                str(count),
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8
    assert all("done" in out for out in outputs)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/budgets.db"
    else:
        with pg_database() as url:
            yield url


def test_eight_client_processes_end_exact(db_url: str) -> None:
    server = ProcessServer(db_url, keys=("k",)).start()
    try:
        requests.put(
            server.url + user_url("load", "hot"),
            json={"total_budget": 1000},
            headers={"Authorization": "Bearer k"},
            timeout=10,
        )
        run_workers(server.url, "load", "hot", 250, "k")
        got = loads(
            requests.get(
                server.url + user_url("load", "hot"),
                headers={"Authorization": "Bearer k"},
                timeout=10,
            ).content
        )
        assert got["data"]["current_cost"] == PRICE * 2000
    finally:
        server.stop()


def test_sigkill_and_restart_mid_load_keeps_totals_exact(db_url: str) -> None:
    count = 1500 if db_url.startswith("sqlite") else 600  # each of 4 clients: still busy at 2 s
    server = ProcessServer(db_url).start()
    try:
        requests.put(server.url + user_url("kill", "hot"), json={"total_budget": 1000}, timeout=10)
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "hosted_worker.py"),
                    server.url,
                    "kill",
                    "hot",
                    str(count),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for _ in range(2):
            time.sleep(1.0)
            assert any(p.poll() is None for p in procs)  # the kill lands mid-load
            server.kill()
            time.sleep(0.3)
            server.start()
        outputs = [p.communicate(timeout=240)[0] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4 and all("done" in o for o in outputs)
        got = loads(requests.get(server.url + user_url("kill", "hot"), timeout=10).content)
        assert got["data"]["current_cost"] == PRICE * 4 * count
    finally:
        server.stop()


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from budget_manager.server import ApiKeys

    monkeypatch.setenv("BUDGET_MANAGER_API_KEYS", "k1\n k2=a|b \n\n# a comment\nk4=c,d")
    keys = ApiKeys.from_env(["k3"])
    assert keys.lookup("k1") == (True, None) and keys.lookup("k3") == (True, None)
    assert keys.lookup("k2") == (True, frozenset({"a", "b"}))
    assert keys.lookup("k4") == (True, frozenset({"c", "d"}))
    assert keys.lookup("nope")[0] is False
    monkeypatch.setenv("BUDGET_MANAGER_API_KEYS", "k1, k2 ,")  # one line of plain keys
    assert set(ApiKeys.from_env().keys) == {"k1", "k2"}


def test_the_core_and_its_stores_import_without_the_extras(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn', 'psycopg', 'psycopg_pool', 'pydantic'):\n"
        "    sys.modules[name] = None\n"
        "import budget_manager\n"
        f"m = budget_manager.BudgetManager('p', store='sqlite:///{tmp_path}/x.db')\n"
        "m.create_budget(total_budget=1, user='u')\n"
        "print(m.get_total_budget('u'))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1.0"


def test_a_cost_sent_without_a_json_content_type_is_refused(service: ThreadServer) -> None:
    call(service, "PUT", user_url("ctype", "u"), {"total_budget": 1})
    answer = requests.post(
        service.url + user_url("ctype", "u") + "/cost",
        data='{"cost": 0.5}',
        headers={**ADMIN, "Content-Type": "text/plain"},
        timeout=10,
    )
    assert answer.status_code == 422 and answer.json()["status"] == "error"
    assert call(service, "GET", user_url("ctype", "u")).json()["data"]["current_cost"] == 0


def test_periods_through_the_service_roll_as_the_core_ledger_does(tmp_path: Path) -> None:
    from conftest import FakeClock, utc

    from budget_manager.operations import Operations
    from budget_manager.periods import parse_duration
    from budget_manager.records import from_json, new_record
    from budget_manager.stores.memory import MemoryStore

    clock = FakeClock(utc("2024-01-31T09:00"))
    server = ThreadServer(store_url=f"sqlite:///{tmp_path}/p.db", api_keys=[], clock=clock).start()
    try:
        url = server.url + user_url("periods", "ann")
        body = {"total_budget": 5, "duration": "monthly", "created_at": clock.now}
        requests.put(url, json=body, timeout=10).raise_for_status()
        local = Operations(MemoryStore(), clock)
        local.put("ann", new_record(Decimal(5), parse_duration("monthly"), clock.now))
        for when in ("2024-02-10", "2024-02-29T09:00", "2024-03-31T09:00", "2025-01-01"):
            clock.set(when)
            expected = local.charge("ann", "m", Decimal("0.5")).record
            answer = requests.post(url + "/cost", json={"cost": "0.5", "model": "m"}, timeout=10)
            assert from_json("ann", loads(answer.content)["data"]) == expected
        clock.set("2025-02-01T09:00")  # the period ended: reads as reset, without a write
        assert requests.get(url, timeout=10).json()["data"]["current_cost"] == 0
    finally:
        server.stop()
