"""Names follow one rule in the library, the service and every store: control characters are
refused naming the field (never a 5xx), and any other name works end to end, ``/``, ``%``,
``..``, spaces and all, through the hosted client and the service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from _service import ThreadServer, database

from budget_manager import BudgetManager, InvalidInputError, names, register_model
from budget_manager.records import new_record
from budget_manager.stores import store_from_url

ODD_NAMES = ["org/user", "..", ".", "%2F", "100%", "a b", "x?y#z", "ü/..", "日本語", "-health-"]
RESPONSE = {"model": "names-model", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}


@pytest.fixture(autouse=True)
def _price() -> None:
    register_model({"names-model": {"input_cost_per_token": 0.001, "output_cost_per_token": 0}})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadServer]:
    """One service per database for the module; each test uses projects of its own."""
    with database(request.param, tmp_path_factory.mktemp("names")) as url:
        server = ThreadServer(store_url=url, api_keys=[]).start()
        yield server
        server.stop()


def send(service: ThreadServer, method: str, path: str, body: Any = None) -> requests.Response:
    data = None if body is None else json.dumps(body)
    headers = {"Content-Type": "application/json"}
    return requests.request(method, service.url + path, data=data, headers=headers, timeout=10)


def test_segments_round_trip() -> None:
    for name in ODD_NAMES:
        segment = names.to_segment(name)
        assert "/" not in segment and segment not in (".", "..")
        assert names.from_segment(segment) == name
    assert names.problem(names.from_segment("%FF")) is not None  # not UTF-8: refused, no crash


def test_odd_names_work_end_to_end_through_the_hosted_client(service: ThreadServer) -> None:
    for project in ("org/project", "..", "a b%"):
        m = BudgetManager(project, client_type="hosted", api_base=service.url)
        for user in ODD_NAMES:
            m.create_budget(total_budget=10, user=user)
            m.update_cost(user=user, completion_obj=RESPONSE)
            assert m.get_current_cost(user) == 1.0 and m.is_valid_user(user)
        assert sorted(m.get_users()) == sorted(ODD_NAMES)
        assert m.reset_cost("org/user")["user"]["current_cost"] == 0
        assert m.store.delete("..") and not m.is_valid_user("..")
        m.close()
    plain = BudgetManager("org/project", client_type="hosted", api_base=service.url)
    assert plain.get_current_cost("org/user") == 0 and plain.get_current_cost("%2F") == 1.0
    answer = send(service, "POST", "/get_budget", {"project_name": "org/project"}).json()
    assert set(answer["data"]) == set(ODD_NAMES) - {".."}
    plain.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/projects/p/users/a%00b/cost", {"cost": 1}, "user"),
        ("POST", "/v1/projects/p%00/users/u/cost", {"cost": 1}, "project"),
        ("PUT", "/v1/projects/p/users/a%00b", {"total_budget": 1}, "user"),
        ("GET", "/v1/projects/p/users/a%1Fb", None, "user"),
        ("DELETE", "/v1/projects/p/users/a%7F", None, "user"),
        ("GET", "/v1/projects/%C2%9F/users", None, "project"),
        ("POST", "/v1/projects/p/users/%FF%FE/reset", None, "user"),
        ("POST", "/v1/projects/p/users/u/cost", {"cost": 1, "model": "m\x00"}, "model"),
        ("POST", "/get_budget", {"project_name": "p\x00"}, "project_name"),
        ("POST", "/set_budget", {"project_name": "p\n", "user_dict": {}}, "project_name"),
        ("POST", "/set_budget", {"project_name": "p", "user_dict": {"a\x00": {}}}, "user_dict"),
    ],
)
def test_control_characters_get_422_naming_the_field(
    service: ThreadServer, method: str, path: str, body: Any, field: str
) -> None:
    send(service, "PUT", "/v1/projects/p/users/u", {"total_budget": 5}).raise_for_status()
    answer = send(service, method, path, body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"].startswith(field), answer.text
    assert "postgresql" not in answer.text and "sqlite" not in answer.text
    users = send(service, "GET", "/v1/projects/p/users").json()["users"]
    assert users == ["u"]
    assert send(service, "GET", "/v1/projects/p/users/u").json()["data"]["current_cost"] == 0


@pytest.mark.parametrize("kind", ["json", "sqlite", "postgresql"])
def test_the_library_and_every_store_refuse_control_characters(kind: str, tmp_path: Path) -> None:
    with database("sqlite" if kind == "json" else kind, tmp_path) as url:
        if kind == "json":
            url = f"json:///{tmp_path}/names.json"
        m = BudgetManager("p", store=url)
        for bad in ("a\x00b", "tab\there", "\x85", ""):
            with pytest.raises(InvalidInputError, match="user") as caught:
                m.create_budget(total_budget=1, user=bad)
            assert caught.value.field == "user"
            assert not m.is_valid_user(bad)
            with pytest.raises(InvalidInputError, match="user"):
                m.store.put(bad, new_record(1, None, 0.0))  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="project"):
            BudgetManager("p\x00", store=url)
        if kind != "json":  # a JSON store's file is named by its path, not by the project
            with pytest.raises(InvalidInputError, match="project"):
                store_from_url(url, "p\x00")
        assert m.get_users() == []
        m.close()


def test_a_hosted_client_refuses_bad_names_before_sending(service: ThreadServer) -> None:
    m = BudgetManager("refuse", client_type="hosted", api_base=service.url)
    with pytest.raises(InvalidInputError, match="user"):
        m.create_budget(total_budget=1, user="a\x00")
    with pytest.raises(InvalidInputError, match="model"):
        m.store.charge("u", "m\x00", Decimal(1))
    with pytest.raises(InvalidInputError, match="project"):
        BudgetManager("p\x00", client_type="hosted", api_base=service.url)
    assert m.get_users() == []
    m.close()


def test_a_raw_slash_is_still_a_separator(service: ThreadServer) -> None:
    path = f"/v1/projects/slash/users/{quote('org/user', safe='')}"
    send(service, "PUT", path, {"total_budget": 5}).raise_for_status()
    assert send(service, "GET", "/v1/projects/slash/users/org/user").status_code == 404
    assert send(service, "GET", path).json()["user"] == "org/user"
