"""Property tests: arbitrary user and project names and amounts through every store (JSON file,
SQLite, PostgreSQL, and the hosted client over the service on each database) and through the
service's HTTP API. Either a name or amount round-trips exactly, or it gets a clear library
error or 4xx naming the field, and nothing else changes."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from _service import ThreadServer, pg_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budget_manager import BudgetManager, InvalidInputError, names
from budget_manager.money import MONEY_CONTEXT, rounded, to_money, to_text
from budget_manager.records import loads

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TRICKY = ["..", ".", "/", "a/b", "%", "%2F", "%00", "a b", " ", "?", "#", "\\", "-health-", "日本"]
name_text = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=12),
    st.text(st.characters(max_codepoint=0xA0), min_size=1, max_size=12),
    st.text(min_size=250, max_size=260),
)
amounts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
)
SERVICE_MAX = Decimal(10) ** 15


def money_text_fits(value: Any) -> bool:
    """Whether the hosted client's decimal string of ``value`` has at most 30 decimals."""
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return "." not in to_text(amount) or len(to_text(amount).split(".")[1]) <= 30
    except ValueError:
        return False


def acceptable_amount(value: Any, service: bool, text: bool = False) -> bool:
    """Whether ``value`` is money: finite and not negative; for the service, at most 1e15, and
    as a decimal string (``text``, which is how the hosted client sends amounts) in plain
    notation with at most 30 decimals."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return False
        value = Decimal(repr(value))
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        return False
    if service and amount > SERVICE_MAX:
        return False
    if text:
        return re.fullmatch(r"[0-9]+(\.[0-9]{1,30})?", str(value)) is not None
    return True


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("props")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def services(folder: Path) -> Iterator[dict[str, ThreadServer]]:
    """The service over SQLite and over PostgreSQL (its own database)."""
    with pg_database() as service_pg:
        running = {
            "sqlite": ThreadServer(store_url=f"sqlite:///{folder}/service.db", api_keys=[]),
            "postgresql": ThreadServer(store_url=service_pg, api_keys=[]),
        }
        for server in running.values():
            server.start()
        yield running
        for server in running.values():
            server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, services: dict[str, ThreadServer]) -> ThreadServer:
    return services[request.param]


STORES = ["json", "sqlite", "postgresql", "hosted-sqlite", "hosted-postgresql"]


def manager(
    kind: str, project: str, folder: Path, pg_url: str, services: dict[str, ThreadServer]
) -> Any:
    if kind.startswith("hosted-"):
        url = services[kind.removeprefix("hosted-")].url
        return BudgetManager(project, client_type="hosted", api_base=url, retries=0)
    store = {
        "json": f"json:///{folder}/props.json",
        "sqlite": f"sqlite:///{folder}/props.db",
        "postgresql": pg_url,
    }[kind]
    return BudgetManager(project, store=store)


@pytest.mark.parametrize("kind", STORES)
def test_any_names_round_trip_or_are_refused(
    kind: str, folder: Path, pg_url: str, services: dict[str, ThreadServer]
) -> None:
    @SETTINGS
    @given(project=name_text, user=name_text)
    def check(project: str, user: str) -> None:
        if names.problem(project) is not None:
            with pytest.raises(InvalidInputError, match="project"):
                manager(kind, project, folder, pg_url, services)
            return
        m = manager(kind, project, folder, pg_url, services)
        before = m.user_dict
        if names.problem(user) is not None:
            with pytest.raises(InvalidInputError, match="user") as refused:
                m.create_budget(total_budget=5, user=user)
            assert refused.value.field == "user"
            assert not m.is_valid_user(user)
            assert m.user_dict == before
        else:
            m.create_budget(total_budget=5, user=user)
            m._ops.charge(user, "model", Decimal("0.0000001725"))
            assert user in m.get_users() and m.is_valid_user(user)
            assert m.get_current_cost(user) == 0.0000001725
            assert {u: r for u, r in m.user_dict.items() if u != user} == {
                u: r for u, r in before.items() if u != user
            }
        m.close()

    check()


@pytest.mark.parametrize("kind", STORES)
def test_any_amounts_round_trip_or_are_refused(
    kind: str, folder: Path, pg_url: str, services: dict[str, ThreadServer]
) -> None:
    m = manager(kind, "amounts", folder, pg_url, services)

    @SETTINGS
    @given(amount=amounts)
    def check(amount: Any) -> None:
        before = m.user_dict
        hosted = kind.startswith("hosted")  # sends amounts as decimal strings
        if acceptable_amount(amount, service=hosted) and (not hosted or money_text_fits(amount)):
            m.create_budget(total_budget=amount, user="u")
            # kept to the stores' resolution, 1e-12 USD
            assert m.get_total_budget("u") == float(rounded(to_money(amount)))
            assert m.get_current_cost("u") == 0
        else:
            with pytest.raises(InvalidInputError):
                m.create_budget(total_budget=amount, user="u")
            assert m.user_dict == before

    check()
    m.close()


def test_any_names_through_the_service_api(service: ThreadServer) -> None:
    @SETTINGS
    @given(project=name_text, user=name_text)
    def check(project: str, user: str) -> None:
        users = f"/v1/projects/{names.to_segment(project)}/users"
        path = f"{users}/{names.to_segment(user)}"
        answer = requests.put(service.url + path, json={"total_budget": "1"}, timeout=10)
        bad = [f for f, n in (("project", project), ("user", user)) if names.problem(n)]
        if bad:
            assert answer.status_code == 422 and answer.json()["field"] in bad, answer.text
            listed = requests.get(service.url + users, timeout=10)
            assert listed.status_code == 422 or user not in listed.json()["users"]
            return
        assert answer.status_code == 200 and answer.json()["user"] == user, answer.text
        cost = requests.post(service.url + path + "/cost", json={"cost": "0.5"}, timeout=10)
        assert cost.json()["data"]["current_cost"] == 0.5
        found = requests.post(
            service.url + "/get_budget", json={"project_name": project}, timeout=10
        ).json()
        assert found["data"][user]["current_cost"] == 0.5

    check()


def test_any_costs_through_the_service_api(service: ThreadServer) -> None:
    url = f"{service.url}/v1/projects/costs/users/u"
    requests.put(url, json={"total_budget": "1000"}, timeout=10).raise_for_status()

    @SETTINGS
    @given(cost=st.one_of(amounts, amounts.map(str)))
    def check(cost: Any) -> None:
        before = loads(requests.get(url, timeout=10).content)["data"]["current_cost"]
        # a Decimal goes as a JSON number, written exactly
        body = f'{{"cost": {cost}}}' if isinstance(cost, Decimal) else json.dumps({"cost": cost})
        answer = requests.post(
            url + "/cost", data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
        after = loads(requests.get(url, timeout=10).content)["data"]["current_cost"]
        if answer.status_code == 200:
            text = isinstance(cost, str)  # exact; a JSON number is read as a double
            amount = Decimal(cost) if text else Decimal(repr(float(cost)))
            assert acceptable_amount(cost, service=True, text=text)
            assert after == MONEY_CONTEXT.add(before, rounded(amount))
        else:  # refused, naming the amount (or the body, when it is not JSON at all)
            assert answer.status_code == 422, answer.text
            assert answer.json()["field"] in ("cost", "body"), answer.text
            assert after == before

    check()
