"""BudgetManager(client_type="hosted") against this project's service, against a plain
LiteLLM-style two-endpoint service, and LiteLLM's own hosted client against this service; the
outbox that keeps spend while the service is down."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from _service import ThreadServer, free_port

from budget_manager import (
    BudgetManager,
    InvalidInputError,
    StoreUnavailableError,
    UnknownUserError,
    register_model,
)
from budget_manager.stores.hosted import HostedStore

PRICE = 0.0001725
RESPONSE = {"model": "hosted-model", "usage": {"prompt_tokens": 1, "completion_tokens": 0}}
HEADERS = {"Authorization": "Bearer client-key", "X-Team": "alpha"}


@pytest.fixture(autouse=True)
def _price() -> None:
    register_model({"hosted-model": {"input_cost_per_token": PRICE, "output_cost_per_token": 0}})


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ThreadServer]:
    server = ThreadServer(store_url=f"sqlite:///{tmp_path}/svc.db", api_keys=["client-key"])
    yield server.start()
    server.stop()


def hosted(url: str, project: str = "proj", **options: Any) -> BudgetManager:
    options.setdefault("retries", 1)
    options.setdefault("backoff", 0.01)
    return BudgetManager(project, client_type="hosted", api_base=url, headers=HEADERS, **options)


# -- against this project's service ----------------------------------------------------------------
def test_full_api_through_the_service_uses_atomic_operations(service: ThreadServer) -> None:
    m = hosted(service.url)
    assert m.store.protocol == "atomic"  # type: ignore[attr-defined]
    m.create_budget(total_budget=10, user="ann", duration="monthly")
    for _ in range(1000):
        m.update_cost(user="ann", completion_obj=RESPONSE)
    assert m.get_current_cost("ann") == 0.1725
    assert m.get_model_cost("ann") == {"hosted-model": 0.1725}
    assert m.get_total_budget("ann") == 10 and m.is_valid_user("ann") and m.get_users() == ["ann"]
    other = hosted(service.url)  # a second client sees the same budgets
    assert other.get_current_cost("ann") == 0.1725
    assert m.reset_cost("ann")["user"]["current_cost"] == 0
    m.reset_on_duration("ann")
    m.update_budget_all_users()
    assert m.save_data() == {"status": "success"}
    with pytest.raises(UnknownUserError):
        m.update_cost(user="nobody", completion_obj=RESPONSE)


def test_a_repeated_idempotency_key_counts_once(service: ThreadServer) -> None:
    store = HostedStore(service.url, "idem", headers=HEADERS)
    m = BudgetManager("idem", store=store)
    m.create_budget(total_budget=1, user="u")
    for _ in range(3):
        store.charge("u", "m", Decimal("0.1"), key="same")
    assert m.get_current_cost("u") == 0.1


class LoseFirstAnswers:
    """Applies the first two cost requests, then answers them 502 as a failing proxy would."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.to_lose = 2

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/cost") or self.to_lose == 0:
            await self.app(scope, receive, send)
            return
        self.to_lose -= 1

        async def discard(message: Any) -> None:
            pass

        await self.app(scope, receive, discard)
        await send({"type": "http.response.start", "status": 502, "headers": []})
        await send({"type": "http.response.body", "body": b"bad gateway"})


def test_a_retried_cost_whose_answer_was_lost_counts_once(tmp_path: Path) -> None:
    server = ThreadServer(
        store_url=f"sqlite:///{tmp_path}/svc.db", api_keys=["client-key"], wrap=LoseFirstAnswers
    ).start()
    try:
        m = hosted(server.url, retries=3)
        m.create_budget(total_budget=10, user="ann")
        m.update_cost(user="ann", completion_obj=RESPONSE)  # applied, lost twice, then replayed
        assert m.get_current_cost("ann") == PRICE
        m.update_cost(user="ann", completion_obj=RESPONSE)
        assert m.get_current_cost("ann") == float(Decimal(str(PRICE)) * 2)
    finally:
        server.stop()


def test_api_base_is_required(monkeypatch: pytest.MonkeyPatch, service: ThreadServer) -> None:
    with pytest.raises(InvalidInputError, match="api_base"):
        BudgetManager("p", client_type="hosted")
    monkeypatch.setenv("BUDGET_MANAGER_API_BASE", service.url)
    m = BudgetManager("p", client_type="hosted", headers=HEADERS)
    assert m.api_base == service.url and m.get_users() == []


def test_an_unreachable_service_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    m = hosted(url, retries=0)
    with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{url.rsplit(':', 1)[1]}"):
        m.get_current_cost("ann")


# -- the outbox ------------------------------------------------------------------------------------
def test_spend_while_the_service_is_down_is_delivered_when_it_is_back(
    service: ThreadServer,
) -> None:
    m = hosted(service.url)
    m.create_budget(total_budget=10, user="ann")
    m.update_cost(user="ann", completion_obj=RESPONSE)
    service.stop()
    for n in range(2, 5):  # answered from the last record seen plus what waits in the outbox
        assert m.update_cost(user="ann", completion_obj=RESPONSE)["user"]["current_cost"] == float(
            Decimal(str(PRICE)) * n
        )
    answer = m.save_data()
    assert answer["status"] == "pending" and answer["pending"] == 3
    service.start()  # same port, same database
    assert m.save_data() == {"status": "success"}
    assert m.get_current_cost("ann") == float(Decimal(str(PRICE)) * 4)


def test_the_outbox_outlives_the_client_process(service: ThreadServer) -> None:
    first = hosted(service.url)
    first.create_budget(total_budget=10, user="bo")
    first.update_cost(user="bo", completion_obj=RESPONSE)
    service.stop()
    first.update_cost(user="bo", completion_obj=RESPONSE)
    first.close()
    service.start()
    later = hosted(service.url)  # a new client delivers what the first one kept
    assert later.get_current_cost("bo") == float(Decimal(str(PRICE)) * 2)


# -- a plain LiteLLM-style service -------------------------------------------------------------------
class PlainService:
    """Only /get_budget and /set_budget, written from the protocol; records every request."""

    def __init__(self, get_status: int = 404) -> None:
        self.data: dict[str, Any] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        plain = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                plain.requests.append(("GET", self.path, dict(self.headers), None))
                self._answer(get_status, {"detail": "no such route"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                plain.requests.append(("POST", self.path, dict(self.headers), body))
                if self.path == "/get_budget":
                    stored = plain.data.get(body["project_name"])
                    if stored is None:
                        self._answer(200, {"status": "error", "message": "no data"})
                    else:
                        self._answer(200, {"status": "success", "data": stored})
                elif self.path == "/set_budget":
                    plain.data[body["project_name"]] = body["user_dict"]
                    self._answer(200, {"status": "success"})
                else:
                    self._answer(404, {"detail": "Not Found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def plain() -> Iterator[PlainService]:
    service = PlainService()
    yield service
    service.close()


def test_speaks_litellm_protocol_to_a_two_endpoint_service(plain: PlainService) -> None:
    m = hosted(plain.url)
    assert m.store.protocol == "litellm"  # type: ignore[attr-defined]
    m.create_budget(total_budget=10, user="ann", duration="daily")
    m.update_cost(user="ann", completion_obj=RESPONSE)
    m.update_cost(user="ann", model="hosted-model", input_text="hello", output_text="")
    assert m.save_data() == {"status": "success"}
    record = plain.data["proj"]["ann"]
    assert record["total_budget"] == 10 and record["duration"] == 1
    assert record["current_cost"] == m.get_current_cost("ann") > 0
    assert set(record["model_cost"]) == {"hosted-model"}
    # every request carried the headers; saves are LiteLLM's exact bodies
    assert all(h.get("X-Team") == "alpha" for _, _, h, _ in plain.requests)
    posts = [(p, b) for method, p, _, b in plain.requests if method == "POST"]
    assert posts[0] == ("/get_budget", {"project_name": "proj"})
    assert all(set(b) == {"project_name", "user_dict"} for p, b in posts[1:])
    # a new client loads what was saved
    assert hosted(plain.url).get_current_cost("ann") == m.get_current_cost("ann")


@pytest.mark.parametrize("status", [401, 405, 500])
def test_any_other_answer_to_the_probe_means_litellm_protocol(status: int) -> None:
    service = PlainService(get_status=status)
    try:
        m = hosted(service.url)
        assert m.store.protocol == "litellm"  # type: ignore[attr-defined]
        m.create_budget(total_budget=1, user="u")
        assert service.data["proj"]["u"]["total_budget"] == 1
    finally:
        service.close()


def test_litellm_protocol_spend_survives_an_outage(plain: PlainService) -> None:
    m = hosted(plain.url)
    m.create_budget(total_budget=10, user="cy")
    m.update_cost(user="cy", completion_obj=RESPONSE)
    port = plain.server.server_address[1]
    plain.server.shutdown()
    plain.server.server_close()
    m.update_cost(user="cy", completion_obj=RESPONSE)
    assert m.get_current_cost("cy") == float(Decimal(str(PRICE)) * 2)  # read from the dict here
    assert m.save_data()["pending"] == 1
    handler = plain.server.RequestHandlerClass
    plain.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=plain.server.serve_forever, daemon=True).start()
    assert m.save_data() == {"status": "success"}
    assert plain.data["proj"]["cy"]["current_cost"] == float(Decimal(str(PRICE)) * 2)


# -- LiteLLM's own client against this service ------------------------------------------------------
def test_litellm_hosted_client_works_against_this_service(tmp_path: Path) -> None:
    import litellm

    server = ThreadServer(store_url=f"sqlite:///{tmp_path}/svc.db", api_keys=[]).start()
    try:
        theirs = litellm.BudgetManager(
            project_name="shared", client_type="hosted", api_base=server.url
        )
        theirs.create_budget(total_budget=10, user="ann", duration="monthly")
        theirs.update_cost(user="ann", model="gpt-4o", input_text="hello there", output_text="hi")
        assert theirs.save_data() == {"status": "success"}
        spent = theirs.get_current_cost("ann")
        assert spent > 0
        ours = BudgetManager("shared", client_type="hosted", api_base=server.url)
        assert ours.get_current_cost("ann") == pytest.approx(spent, rel=1e-12)
        assert ours.get_total_budget("ann") == 10
        again = litellm.BudgetManager(
            project_name="shared", client_type="hosted", api_base=server.url
        )
        assert again.get_current_cost("ann") == pytest.approx(spent, rel=1e-12)
    finally:
        server.stop()
