"""Alerts sent to webhooks: each POSTed as JSON, signed with HMAC-SHA256 of the body, and
retried with backoff while the receiver fails.

Which change crossed a threshold is decided in the store, atomically with the change, so each
alert is announced by exactly one request of one service process; that process delivers it here,
in the background, never delaying the request that crossed it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import InvalidInputError
from ..events import Alert, Event, Listener

logger = logging.getLogger("budget_manager.webhooks")

SIGNATURE_HEADER = "X-Budget-Manager-Signature"
#: Receivers answer within this many seconds, or the attempt counts as failed.
TIMEOUT = 10.0
#: Deliveries that run at once (one slow receiver does not hold up the others).
SENDERS = 4


@dataclass(frozen=True)
class WebhookSettings:
    """Where alerts go: ``urls`` (http or https), signed with ``secret`` when given; a failed
    delivery is tried ``attempts`` times in all, waiting ``backoff`` seconds after the first
    failure, doubling each time up to ``max_backoff``."""

    urls: tuple[str, ...] = ()
    secret: str | None = None
    attempts: int = 8
    backoff: float = 1.0
    max_backoff: float = 60.0

    def __post_init__(self) -> None:
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidInputError(f"webhook {url!r} is not an http:// or https:// URL")
        if self.secret is not None and not self.secret:
            raise InvalidInputError("the webhook secret must not be empty")
        if isinstance(self.attempts, bool) or not 1 <= self.attempts <= 100:
            raise InvalidInputError(f"webhook attempts must be 1 to 100, got {self.attempts!r}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts."""
        return float(min(self.backoff * 2 ** (failures - 1), self.max_backoff))


def alert_body(project: str, alert: Alert) -> bytes:
    """The JSON a webhook receives for one alert: the alert's fields and its project."""
    return json.dumps(
        {"event": "budget.threshold", "project": project, **asdict(alert)},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def signature(secret: str, body: bytes) -> str:
    """The ``X-Budget-Manager-Signature`` of ``body``: HMAC-SHA256 with ``secret``, in hex."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    """Delivers alerts of the ``fractions`` watched to every URL of ``settings``."""

    def __init__(self, settings: WebhookSettings, fractions: Sequence[Decimal]) -> None:
        self.settings = settings
        self.fractions = frozenset(Decimal(str(f)) for f in fractions)
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def listener(self, project: str) -> Listener:
        """What hears ``project``'s events and sends the alerts they carry."""

        def hear(event: Event) -> None:
            for alert in event.alerts:
                if Decimal(str(alert.fraction)) in self.fractions:
                    self.send(project, alert)

        return hear

    def send(self, project: str, alert: Alert) -> None:
        """Queue ``alert`` for every URL."""
        if not self.settings.urls:
            return
        self._start()
        body = alert_body(project, alert)
        for url in self.settings.urls:
            self._queue.put((url, body))

    def _start(self) -> None:
        with self._lock:
            if self._threads:
                return
            for n in range(SENDERS):
                thread = threading.Thread(target=self._work, name=f"webhooks-{n}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        session = requests.Session()
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(session, *item)
            finally:
                self._queue.task_done()

    def _deliver(self, session: requests.Session, url: str, body: bytes) -> None:
        settings = self.settings
        headers = {"Content-Type": "application/json", "User-Agent": "budget-manager"}
        if settings.secret is not None:
            headers[SIGNATURE_HEADER] = signature(settings.secret, body)
        for attempt in range(1, settings.attempts + 1):
            problem = _post(session, url, body, headers)
            if problem is None:
                return
            if attempt == settings.attempts:
                break
            delay = settings.delay(attempt)
            logger.warning("webhook %s failed (%s); trying again in %.1f s", url, problem, delay)
            time.sleep(delay)
        logger.error(
            "webhook %s failed %d times (%s); alert dropped: %s",
            url,
            settings.attempts,
            problem,
            body.decode(),
        )

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for queued deliveries; whether all finished."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True


def _post(session: requests.Session, url: str, body: bytes, headers: dict[str, Any]) -> str | None:
    """None if the receiver took the alert (any 2xx), else what went wrong."""
    try:
        response = session.post(url, data=body, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        return type(exc).__name__
    response.close()
    if 200 <= response.status_code < 300:
        return None
    return f"status {response.status_code}"
