"""The hosted client when the service says no: a kept cost refused for good goes to the
dead-letter file and blocks none behind it; an error names the call that failed; a URL that is
not a budget service fails when the manager is made."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from _service import ThreadServer, database, free_port

from budget_manager import (
    BudgetManager,
    InvalidInputError,
    StoreUnavailableError,
    UnknownUserError,
    register_model,
)
from budget_manager.stores.hosted import HostedStore, ServiceAuthError

PRICE = Decimal("0.25")
RESPONSE = {"model": "dl-model", "usage": {"prompt_tokens": 1, "completion_tokens": 0}}


@pytest.fixture(autouse=True)
def _price() -> None:
    price = {"input_cost_per_token": 0.25, "output_cost_per_token": 0}
    register_model({name: price for name in ("dl-model", "m1", "m2", "m3")})


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def service(store_url: str) -> Iterator[ThreadServer]:
    server = ThreadServer(store_url=store_url, api_keys=[], max_models=2)
    yield server.start()
    server.stop()


def hosted(url: str, outbox: Path, **options: Any) -> BudgetManager:
    options.setdefault("retries", 0)
    return BudgetManager("proj", client_type="hosted", api_base=url, outbox_dir=outbox, **options)


def spent(service: ThreadServer, user: str) -> float:
    answer = requests.get(f"{service.url}/v1/projects/proj/users/{user}", timeout=10)
    return float(answer.json()["data"]["current_cost"])


def test_a_refused_cost_moves_aside_and_the_rest_are_delivered(
    service: ThreadServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = hosted(service.url, tmp_path)
    for user in ("ann", "bo"):
        first.create_budget(total_budget=10, user=user)
    outbox = first._deferred.outbox
    # As an earlier process kept them: a user id with NUL first, then good costs behind it.
    entry = {"model": "dl-model", "cost": "0.25", "at": 0.0}
    outbox.append({**entry, "user": "evil\x00id", "key": "k-nul"})
    outbox.append({**entry, "user": "ann", "key": "k-ann"})
    outbox.append({**entry, "user": "bo", "key": "k-bo", "model": "m" * 300})
    outbox.append({**entry, "user": "bo", "key": "k-bo-2"})
    with caplog.at_level(logging.ERROR, logger="budget_manager"):
        m = hosted(service.url, tmp_path)  # delivers what it finds kept
        m.update_cost(user="ann", completion_obj=RESPONSE)
    assert spent(service, "ann") == 0.5 and spent(service, "bo") == 0.25
    assert m.pending_costs() == 0
    answer = m.save_data()
    assert answer["status"] == "dead_letter" and answer["dead_letter"] == 2
    dead_path = Path(answer["dead_letter_path"])
    assert dead_path == outbox.dead_path and dead_path.parent == tmp_path
    dead = [json.loads(line) for line in dead_path.read_text().splitlines()]
    assert [d["key"] for d in dead] == ["k-nul", "k-bo"]
    assert "control characters" in dead[0]["refused"] and "128" in dead[1]["refused"]
    assert str(dead_path) in caplog.text and "refused" in caplog.text
    m.update_cost(user="bo", completion_obj=RESPONSE)  # later costs keep flowing
    assert spent(service, "bo") == 0.5


def test_a_cost_for_a_budget_deleted_meanwhile_moves_aside(
    service: ThreadServer, tmp_path: Path
) -> None:
    m = hosted(service.url, tmp_path)
    for user in ("ann", "bo"):
        m.create_budget(total_budget=10, user=user)
    service.stop()
    m.update_cost(user="ann", completion_obj=RESPONSE)
    m.update_cost(user="bo", completion_obj=RESPONSE)
    assert m.save_data()["pending"] == 2
    service.start()
    requests.delete(f"{service.url}/v1/projects/proj/users/ann", timeout=10).raise_for_status()
    answer = m.save_data()
    assert answer["status"] == "dead_letter" and answer["dead_letter"] == 1
    assert "pending" not in answer and spent(service, "bo") == 0.25


def test_an_error_names_the_call_that_failed(service: ThreadServer, tmp_path: Path) -> None:
    first = hosted(service.url, tmp_path)
    first.create_budget(total_budget=10, user="ann")
    first._deferred.outbox.append(
        {"user": "gone", "model": "x", "cost": "1", "key": "old", "at": 0.0}
    )
    m = hosted(service.url, tmp_path)
    for model in ("m1", "m2"):
        m.update_cost(user="ann", model=model, input_text="a", output_text="")
    with pytest.raises(InvalidInputError) as refused:
        m.update_cost(user="ann", model="m3", input_text="a", output_text="")
    message = str(refused.value)
    assert "'ann'" in message and "'m3'" in message and "cap is 2" in message
    assert "gone" not in message and refused.value.field == "model"
    with pytest.raises(UnknownUserError, match="'nobody'"):
        m.update_cost(user="nobody", completion_obj=RESPONSE)
    m._deferred.outbox.append(
        {"user": "gone", "model": "x", "cost": "1", "key": "old-2", "at": 0.0}
    )
    service.stop()
    try:
        with pytest.raises(StoreUnavailableError) as down:
            other = hosted(service.url, tmp_path)
            other.update_cost(user="cy", completion_obj=RESPONSE)
        assert "'cy'" in str(down.value) and "gone" not in str(down.value)
        assert "kept" in str(down.value)
    finally:
        service.start()


def test_a_cost_the_service_does_not_authorise_is_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/auth.db"
    server = ThreadServer(store_url=url, api_keys=["right"]).start()
    headers = {"Authorization": "Bearer right"}
    m = hosted(server.url, tmp_path, headers=headers)
    m.create_budget(total_budget=10, user="ann")
    server.stop()
    rotated = ThreadServer(port=server.port, store_url=url, api_keys=["other"]).start()
    try:
        with pytest.raises(ServiceAuthError, match=r"'ann'.*kept"):
            m.update_cost(user="ann", completion_obj=RESPONSE)
        assert m.save_data()["pending"] == 1
    finally:
        rotated.stop()
    server.start()
    try:
        assert m.save_data() == {"status": "success"}
        assert hosted(server.url, tmp_path, headers=headers).get_current_cost("ann") == 0.25
    finally:
        server.stop()


class Answering:
    """An HTTP server that answers every request with one status, content type and body."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (404, "text/html", b"<html><body>Not Found</body></html>"),
        (200, "text/html", b"<html><body>Welcome to nginx!</body></html>"),
        (200, "application/json", b'{"hello": "world"}'),
        (404, "application/json", b'{"status": "error", "message": "Not Found"}'),
        (400, "application/json", b'{"status": "error", "message": "bad"}'),
    ],
)
def test_a_url_that_is_not_a_budget_service_fails_when_the_manager_is_made(
    status: int, content_type: str, body: bytes, tmp_path: Path
) -> None:
    other = Answering(status, content_type, body)
    try:
        with pytest.raises(InvalidInputError, match="does not look like a budget service") as e:
            hosted(other.url, tmp_path)
        assert other.url in str(e.value) and e.value.field == "api_base"
    finally:
        other.close()


def test_this_service_under_a_wrong_path_is_not_an_empty_project(
    service: ThreadServer, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match=f"{service.url}/v1 does not look like"):
        hosted(service.url + "/v1", tmp_path)


def test_a_service_that_is_down_is_not_a_wrong_url(tmp_path: Path) -> None:
    m = hosted(f"http://127.0.0.1:{free_port()}", tmp_path)  # made: costs may wait for it
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        m.get_users()


def test_litellm_protocol_kept_costs_for_a_user_gone_move_aside(tmp_path: Path) -> None:
    from test_hosted_client import PlainService

    plain = PlainService()
    try:
        plain.data["proj"] = {"bo": {"total_budget": 10, "current_cost": 0}}
        first = hosted(plain.url, tmp_path)
        store = first.store
        assert isinstance(store, HostedStore) and store.protocol == "litellm"
        # Kept by an earlier process, for a user another client has since removed, and for bo:
        outbox = first._deferred.outbox
        outbox.append({"user": "ann", "model": "dl-model", "cost": "1", "key": "a", "at": 0})
        outbox.append({"user": "bo", "model": "dl-model", "cost": "1", "key": "b", "at": 0})
        later = hosted(plain.url, tmp_path)
        answer = later.save_data()
        assert answer["status"] == "dead_letter" and answer["dead_letter"] == 1
        assert plain.data["proj"]["bo"]["current_cost"] == 1 and "ann" not in plain.data["proj"]
        assert "'ann' has no budget" in Path(answer["dead_letter_path"]).read_text()
    finally:
        plain.close()
