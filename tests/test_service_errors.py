"""What the service answers when things go wrong: never a database URL or a driver's message
(those are logged), never a number JSON cannot carry, and a charge run once even when the
store fails after it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from _service import ThreadServer, database, pg_database

from budget_manager import BudgetManager, CorruptStoreError, InvalidBudgetError
from budget_manager.errors import StoreUnavailableError
from budget_manager.records import from_json
from budget_manager.stores.postgres import AsyncPostgresStore, PostgresStore
from budget_manager.stores.sql import SqlStore
from budget_manager.stores.sqlite import SqliteStore


def strict_json(text: str) -> Any:
    """JSON as the standard has it: NaN and Infinity are not numbers of it."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadServer]:
    """One service per database for the module; each test uses projects of its own."""
    with database(request.param, tmp_path_factory.mktemp("errors")) as url:
        server = ThreadServer(store_url=url, api_keys=[])
        yield server.start()
        server.stop()


def send(service: ThreadServer, method: str, path: str, body: Any = None) -> requests.Response:
    data = body if isinstance(body, str) or body is None else json.dumps(body)
    headers = {"Content-Type": "application/json"}
    return requests.request(method, service.url + path, data=data, headers=headers, timeout=10)


def assert_no_leak(answer: requests.Response, *secrets: str) -> None:
    for secret in ("postgresql://", "sqlite", "psycopg", "FATAL", "budgets.db", *secrets):
        assert secret not in answer.text, answer.text
    assert answer.json()["status"] == "error"


def test_a_failing_database_shows_no_url_or_driver_text(caplog: pytest.LogCaptureFixture) -> None:
    import psycopg

    with pg_database() as url:
        server = ThreadServer(store_url=url, api_keys=[]).start()
        try:
            send(server, "PUT", "/v1/projects/p/users/u", {"total_budget": 5}).raise_for_status()
            with psycopg.connect(url, autocommit=True) as conn:  # every statement now fails
                conn.execute("ALTER TABLE bm_budgets RENAME TO bm_budgets_gone")
            with caplog.at_level(logging.ERROR, logger="budget_manager.server"):
                for method, path, body in (
                    ("GET", "/health", None),
                    ("POST", "/v1/projects/p/users/u/cost", {"cost": 1}),
                    ("PUT", "/v1/projects/p/users/v", {"total_budget": 1}),
                    ("POST", "/get_budget", {"project_name": "p"}),
                ):
                    answer = send(server, method, path, body)
                    assert answer.status_code in (500, 503), answer.text
                    assert_no_leak(answer, url.rsplit("/", 1)[1], "bm_budgets", "relation")
            assert 'relation "bm_budgets" does not exist' in caplog.text  # logged instead
        finally:
            server.stop()


def test_a_corrupt_sqlite_file_shows_no_path_or_driver_text(tmp_path: Path) -> None:
    server = ThreadServer(store_url=f"sqlite:///{tmp_path}/budgets.db", api_keys=[]).start()
    try:
        send(server, "PUT", "/v1/projects/p/users/u", {"total_budget": 5}).raise_for_status()
        for file in tmp_path.glob("budgets.db*"):
            with open(file, "r+b") as handle:
                handle.write(b"garbage!" * 512)
        for path in ("/health", "/v1/projects/p/users/u"):
            answer = send(server, "GET", path)
            assert answer.status_code in (500, 503)
            assert_no_leak(answer, str(tmp_path), "not a database")
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/projects/numbers/users/n", '{"total_budget": NaN}', "total_budget"),
        ("/v1/projects/numbers/users/n", '{"total_budget": -Infinity}', "total_budget"),
        ("/v1/projects/numbers/users/n", '{"total_budget": 1e400}', "total_budget"),
        ("/v1/projects/numbers/users/n", '{"total_budget": 1, "created_at": NaN}', "created_at"),
        ("/v1/projects/numbers/users/u/cost", '{"cost": 1e400}', "cost"),
        ("/v1/projects/numbers/users/u/cost", '{"cost": -Infinity}', "cost"),
    ],
)
def test_numbers_json_cannot_carry_are_refused(
    service: ThreadServer, path: str, body: str, field: str
) -> None:
    user = "/v1/projects/numbers/users/u"
    send(service, "PUT", user, {"total_budget": 5}).raise_for_status()
    method = "POST" if path.endswith("/cost") else "PUT"
    answer = send(service, method, path, body)
    assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    assert send(service, "GET", "/v1/projects/numbers/users").json()["users"] == ["u"]
    assert send(service, "GET", user).json()["data"]["current_cost"] == 0


@pytest.mark.parametrize(
    "record",
    [
        '{"total_budget": 1, "note": NaN}',
        '{"total_budget": 1, "note": [1, {"deep": Infinity}]}',
        '{"total_budget": 1, "note": -1e400}',
        '{"total_budget": 1, "current_cost": NaN}',
        '{"total_budget": 1, "duration": 1, "last_updated_at": Infinity}',
    ],
)
def test_numbers_json_cannot_carry_are_refused_in_user_dicts(
    service: ThreadServer, record: str
) -> None:
    good = '{"project_name": "d", "user_dict": {"keep": {"total_budget": 2, "note": 1e300}}}'
    send(service, "POST", "/set_budget", good).raise_for_status()
    answer = send(
        service,
        "POST",
        "/set_budget",
        f'{{"project_name": "d", "user_dict": {{"keep": {{"total_budget": 3}}, "bad": {record}}}}}',
    )
    assert answer.status_code == 422 and answer.json()["field"].startswith("user_dict.bad")
    stored = strict_json(send(service, "POST", "/get_budget", {"project_name": "d"}).text)
    assert stored["data"] == {
        "keep": {"total_budget": 2, "current_cost": 0, "model_cost": {}, "note": 1e300}
    }


def test_the_library_refuses_numbers_json_cannot_carry() -> None:
    m = BudgetManager("p", path="nan.json")
    for amount in (float("nan"), float("inf"), -float("inf"), Decimal("NaN"), float("1e400")):
        with pytest.raises(InvalidBudgetError):
            m.create_budget(total_budget=amount, user="u")
    assert m.get_users() == []
    for extra in (float("nan"), [float("inf")], {"x": Decimal("-Infinity")}):
        with pytest.raises(CorruptStoreError, match="JSON cannot carry"):
            from_json("u", {"total_budget": 1, "note": extra})


def test_the_fast_lane_never_runs_a_charge_twice(
    service: ThreadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(service, "PUT", "/v1/projects/once/users/u", {"total_budget": 5}).raise_for_status()
    calls = []

    def committed_then_lost(cls: type[SqlStore]) -> Any:
        charge = cls.charge

        def patched(self: SqlStore, *args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            charge(self, *args, **kwargs)  # the charge commits, and then the connection drops
            raise StoreUnavailableError("connection lost after commit")

        return patched

    def committed_then_lost_async(cls: type[AsyncPostgresStore]) -> Any:
        charge = cls.charge

        async def patched(self: AsyncPostgresStore, *args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            await charge(self, *args, **kwargs)
            raise StoreUnavailableError("connection lost after commit")

        return patched

    for cls in (SqliteStore, PostgresStore):
        monkeypatch.setattr(cls, "charge", committed_then_lost(cls))
    monkeypatch.setattr(AsyncPostgresStore, "charge", committed_then_lost_async(AsyncPostgresStore))
    answer = send(service, "POST", "/v1/projects/once/users/u/cost", {"cost": "0.5"})
    monkeypatch.undo()
    assert answer.status_code == 503 and answer.json()["status"] == "error"
    assert len(calls) == 1
    assert send(service, "GET", "/v1/projects/once/users/u").json()["data"]["current_cost"] == 0.5


def test_the_fast_lane_and_the_routes_answer_errors_alike(service: ThreadServer) -> None:
    send(service, "PUT", "/v1/projects/alike/users/u", {"total_budget": 1}).raise_for_status()
    over = send(
        service, "POST", "/v1/projects/alike/users/u/cost", {"cost": 2, "within_budget": True}
    )
    unknown = send(service, "POST", "/v1/projects/alike/users/nobody/cost", {"cost": 1})
    assert over.status_code == 409 and over.json()["field"] == "cost"
    assert unknown.status_code == 404 and unknown.json()["field"] == "user"
    assert "nobody" in unknown.json()["message"]
    assert send(service, "GET", "/v1/projects/alike/users/u").json()["data"]["current_cost"] == 0
