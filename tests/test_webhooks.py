"""Alerts from the budget service to webhooks: one signed POST per alert, retried while the
receiver fails, and each threshold announced once however many services share the database."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from _service import ProcessServer, ThreadServer, pg_database

from budget_manager import BudgetManager, InvalidInputError
from budget_manager.server import create_app

SECRET = "s3cret"


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps what it is sent; it answers 500 to the first
    ``failures`` requests."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.failures
                    if not failing:
                        receiver.received.append((dict(self.headers), body))
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The first ``count`` alerts received (waiting for them), checking each signature."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        found = []
        for headers, body in self.received:
            expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Budget-Manager-Signature"] == expected
            assert headers["Content-Type"] == "application/json"
            found.append(json.loads(body))
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    opened = Receiver()
    yield opened
    opened.close()


def _service(store_url: str, receiver: Receiver, **options: Any) -> ThreadServer:
    options.setdefault("alert_at", ["0.5", "0.8", "1.0"])
    return ThreadServer(
        store_url=store_url, webhooks=[receiver.url], webhook_secret=SECRET, **options
    ).start()


def test_each_crossing_is_posted_once_signed_with_the_alert_fields(
    tmp_path: Path, receiver: Receiver
) -> None:
    service = _service(f"sqlite:///{tmp_path}/b.db", receiver)
    try:
        bm = BudgetManager("ops", client_type="hosted", api_base=service.url)
        bm.create_budget(total_budget=10, user="team", duration="monthly")
        bm.create_budget(total_budget=1, user="ann", duration="monthly", parent="team")
        for _ in range(10):
            with bm.reserve("ann", amount=0.1) as hold:
                hold.settle(cost=0.1)
    finally:
        bm.close()
        service.stop()
    alerts = receiver.alerts(3)
    assert [(a["user"], a["fraction"]) for a in alerts] == [
        ("ann", 0.5),
        ("ann", 0.8),
        ("ann", 1.0),
    ]
    first = alerts[0]
    assert first["project"] == "ops" and first["event"] == "budget.threshold"
    assert first["spent"] == pytest.approx(0.5) and first["budget"] == 1.0
    assert isinstance(first["period_start"], float)
    time.sleep(0.3)
    assert len(receiver.received) == 3  # team reached 0.1 of 10: nothing


def test_a_failing_receiver_is_retried_with_backoff(tmp_path: Path) -> None:
    receiver = Receiver(failures=2)
    service = _service(f"sqlite:///{tmp_path}/b.db", receiver, alert_at=["1"])
    try:
        bm = BudgetManager("ops", client_type="hosted", api_base=service.url)
        bm.create_budget(total_budget=0.1, user="ann")
        started = time.monotonic()
        bm.reserve("ann", amount=0.1).settle(cost=0.1)
        assert time.monotonic() - started < 1  # delivery never delays the request
        alerts = receiver.alerts(1, timeout=20)
        assert [(a["user"], a["fraction"]) for a in alerts] == [("ann", 1.0)]
        assert receiver.attempts == 3
        assert time.monotonic() - started >= 3  # waited 1 s, then 2 s
    finally:
        service.stop()
        receiver.close()


def test_services_sharing_a_database_announce_each_threshold_once(receiver: Receiver) -> None:
    with pg_database() as url:
        services = [_service(url, receiver) for _ in range(2)]
        try:
            managers = [
                BudgetManager("ops", client_type="hosted", api_base=s.url) for s in services
            ]
            managers[0].create_budget(total_budget=1, user="team")
            for user in ("ann", "bob"):
                managers[0].create_budget(total_budget=0.5, user=user, parent="team")

            def spend(bm: BudgetManager, user: str) -> None:
                for _ in range(30):
                    try:
                        with bm.reserve(user, amount=0.02) as hold:
                            hold.settle(cost=0.02)
                    except Exception:
                        return

            threads = [
                threading.Thread(target=spend, args=(bm, user))
                for bm in managers
                for user in ("ann", "bob")
                for _ in range(2)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            expected = sorted(
                (user, fraction) for user in ("ann", "bob", "team") for fraction in (0.5, 0.8, 1.0)
            )
            got = sorted((a["user"], a["fraction"]) for a in receiver.alerts(len(expected)))
            time.sleep(0.5)
            assert got == expected and len(receiver.received) == len(expected)
        finally:
            for service in services:
                service.stop()


@pytest.mark.parametrize(
    "options",
    [
        {"webhooks": ["ftp://example/hook"]},
        {"webhooks": ["not a url"]},
        {"webhooks": ["http://127.0.0.1:9/"], "webhook_secret": ""},
        {"alert_at": ["0"]},
        {"alert_at": ["half"]},
    ],
)
def test_bad_alert_settings_are_refused_at_start(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        create_app(f"sqlite:///{tmp_path}/b.db", **options)


def test_budget_manager_serve_with_workers_posts_each_alert_once(receiver: Receiver) -> None:
    with pg_database() as url:
        args = ("--webhook", receiver.url, "--alert-at", "0.5,1", "--history-retention", "30d")
        env = {"BUDGET_MANAGER_WEBHOOK_SECRET": SECRET}
        service = ProcessServer(url, workers=2, args=args, env=env).start()
        try:
            bm = BudgetManager("ops", client_type="hosted", api_base=service.url)
            bm.create_budget(total_budget=0.4, user="ann")

            def spend() -> None:
                client = BudgetManager("ops", client_type="hosted", api_base=service.url)
                for _ in range(20):
                    try:
                        client.reserve("ann", amount=0.01).settle(cost=0.01)
                    except Exception:
                        return

            threads = [threading.Thread(target=spend) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert bm.get_current_cost("ann") == pytest.approx(0.4)
            got = sorted((a["user"], a["fraction"]) for a in receiver.alerts(2))
            time.sleep(0.5)
            assert got == [("ann", 0.5), ("ann", 1.0)] and len(receiver.received) == 2
        finally:
            service.stop()


@pytest.mark.parametrize(
    "args",
    [
        ["--alert-at", "0.5,zero"],
        ["--alert-at", "0"],
        ["--webhook", "ftp://x/hook"],
        ["--history-retention", "forever"],
    ],
)
def test_serve_refuses_bad_alert_options(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "budget_manager.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert args[0] in result.stderr and "Traceback" not in result.stderr
