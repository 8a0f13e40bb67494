"""Budgets behind an HTTP budget service (``client_type="hosted"``).

The client asks the service once for ``/v1/capabilities``. A service that offers atomic
operations (this project's own) gets one small request per change: a cost is
``POST /v1/projects/{p}/users/{u}/cost`` with a fresh idempotency key, retried with the same key.
Any other service is spoken to in LiteLLM's protocol exactly: the whole user dict is loaded with
``POST /get_budget`` and saved with ``POST /set_budget`` after every change and on ``save()``.

A cost that cannot be delivered because the service is unreachable is kept in an
:class:`~budget_manager.stores.outbox.Outbox` and delivered on the next operation that reaches
the service (and on ``save()``, which reports how many are still pending).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from ..errors import (
    BudgetExceededError,
    InvalidInputError,
    StoreError,
    StoreUnavailableError,
    UnknownUserError,
)
from ..records import UserRecord, dump_user_dict, from_json
from .base import BudgetStore, charge_change, register
from .http import DEFAULT_BACKOFF, DEFAULT_RETRIES, DEFAULT_TIMEOUT, HttpClient, json_of
from .outbox import Outbox, default_dir, outbox_path

logger = logging.getLogger("budget_manager")
Protocol = Literal["atomic", "litellm"]


@register
class HostedStore(BudgetStore):
    """One project's budgets on a budget service; see the module docstring."""

    schemes = ("http", "https")
    idempotent = True

    def __init__(
        self,
        api_base: str,
        project: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        outbox_dir: str | Path | None = None,
        protocol: Protocol | None = None,
    ) -> None:
        """``protocol``: force ``"atomic"`` or ``"litellm"`` instead of asking the service.
        ``outbox_dir``: where undelivered costs wait (default ``~/.cache/budget_manager``, or
        ``$BUDGET_MANAGER_OUTBOX_DIR``)."""
        if not isinstance(api_base, str) or not api_base.startswith(("http://", "https://")):
            raise InvalidInputError(f"api_base must be an http(s) URL, got {api_base!r}")
        self.api_base = api_base.rstrip("/")
        self.project = project
        self.http = HttpClient(
            self.api_base, headers, timeout=timeout, retries=retries, backoff=backoff
        )
        folder = Path(outbox_dir) if outbox_dir is not None else default_dir()
        self.outbox = Outbox(outbox_path(folder, self.api_base, project))
        self._protocol: Protocol | None = protocol
        self._lock = threading.RLock()
        self._known: dict[str, UserRecord] = {}  # atomic: last record seen per user
        self._dict: dict[str, UserRecord] | None = None  # litellm: the user dict as saved
        self._users_path = f"/v1/projects/{quote(project, safe='')}/users"
        try:
            self._connect()
        except StoreUnavailableError as exc:  # costs recorded meanwhile wait in the outbox
            logger.warning("%s; will retry on the next operation", exc)

    @classmethod
    def from_url(cls, url: str, project: str, **options: Any) -> HostedStore:
        return cls(url, project, **options)

    def __repr__(self) -> str:
        return f"HostedStore({self.api_base!r}, project={self.project!r})"

    # -- connecting ------------------------------------------------------------------------------
    def _connect(self, flush: bool = True) -> Protocol:
        """The protocol the service speaks, asking it (and loading the dict) the first time;
        then (with ``flush``) deliver anything pending."""
        with self._lock:
            if self._protocol is None:
                # Any answer but an atomic capabilities document means a LiteLLM-style service.
                response = self.http.request("GET", "/v1/capabilities", any_status=True)
                body = json_of(response)
                atomic = (
                    response.status_code == 200
                    and isinstance(body, dict)
                    and body.get("atomic") is True
                )
                self._protocol = "atomic" if atomic else "litellm"
            if self._protocol == "litellm" and self._dict is None:
                self._dict = self._load()
            if flush and self.outbox.has_pending():
                try:
                    self._flush()
                except StoreUnavailableError:
                    if self._protocol == "atomic":
                        raise
                    # LiteLLM's protocol answers from the dict held here: still usable.
            return self._protocol

    def _check_auth(self, response: Any) -> None:
        if response.status_code in (401, 403):
            raise StoreError(
                f"budget service at {self.api_base} refused the request "
                f"(HTTP {response.status_code}): {_message(response)}; check the headers"
            )

    def _user_path(self, user: str, suffix: str = "") -> str:
        return f"{self._users_path}/{quote(user, safe='')}{suffix}"

    # -- LiteLLM's protocol ------------------------------------------------------------------------
    def _load(self) -> dict[str, UserRecord]:
        body = json.dumps({"project_name": self.project})
        response = self.http.request("POST", "/get_budget", body)
        self._check_auth(response)
        data = json_of(response)
        if not isinstance(data, dict) or data.get("status") != "success":
            if isinstance(data, dict) and data.get("status") == "error":
                return {}  # nothing stored for this project yet
            raise StoreError(
                f"budget service at {self.api_base}/get_budget answered HTTP "
                f"{response.status_code} without a user dict: {response.text[:200]!r}"
            )
        users = data.get("data") or {}
        if not isinstance(users, dict):
            raise StoreError(f"budget service at {self.api_base} sent a user dict that is not one")
        return {str(u): from_json(str(u), r) for u, r in users.items()}

    def _save_dict(self, users: dict[str, UserRecord]) -> dict[str, Any]:
        user_dict = dump_user_dict(users).strip()
        body = f'{{"project_name": {json.dumps(self.project)}, "user_dict": {user_dict}}}'
        response = self.http.request("POST", "/set_budget", body)
        self._check_auth(response)
        answer = json_of(response)
        if response.status_code >= 400:
            raise StoreError(
                f"budget service at {self.api_base}/set_budget refused the user dict "
                f"(HTTP {response.status_code}): {_message(response)}"
            )
        return answer if isinstance(answer, dict) else {"status": "success"}

    def _change_dict(self, change: Callable[[dict[str, UserRecord]], UserRecord | None]) -> Any:
        """Apply ``change`` to a copy of the dict, save it, and keep it once the service has."""
        with self._lock:
            self._connect(flush=False)
            assert self._dict is not None
            draft = {u: r.copy() for u, r in self._dict.items()}
            result = change(draft)
            self._save_dict(draft)
            self._dict = draft
            return result

    # -- atomic operations -------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        payload = json.dumps(body) if body is not None else None
        response = self.http.request(method, path, payload)
        self._check_auth(response)
        data = json_of(response)
        status = response.status_code
        if status == 404:
            raise UnknownUserError(path.rsplit("/", 1)[-1], self.project)
        if status == 409 and isinstance(data, dict) and data.get("field") == "cost":
            raise BudgetExceededError(0.0, 0.0, _message(response))
        if status >= 400:
            raise InvalidInputError(
                f"budget service at {self.api_base} rejected {method} {path} "
                f"(HTTP {status}): {_message(response)}"
            )
        return data

    def _record_from(self, user: str, data: Any) -> UserRecord:
        if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
            raise StoreError(f"budget service at {self.api_base} sent no record for {user!r}")
        record = from_json(user, data["data"])
        self._known[user] = record
        return record

    def _send_charge(self, entry: dict[str, Any]) -> UserRecord:
        body = {
            "cost": entry["cost"],
            "model": entry.get("model"),
            "idempotency_key": entry["key"],
            "within_budget": bool(entry.get("within_budget", False)),
        }
        data = self._call("POST", self._user_path(entry["user"], "/cost"), body)
        return self._record_from(entry["user"], data)

    # -- the outbox ---------------------------------------------------------------------------------
    def _flush(self) -> int:
        """Deliver pending costs; how many are still pending."""
        if self._protocol == "atomic":
            return self.outbox.deliver(self._deliver_one)
        if self._dict is None:
            return len(self.outbox.pending())

        pending = self.outbox.pending()

        def apply_all(draft: dict[str, UserRecord]) -> None:
            for entry in pending:
                record = draft.get(entry["user"])
                if record is None:
                    logger.warning("dropping undeliverable cost %s: user unknown", entry)
                    continue
                charge_change(
                    entry["user"], entry.get("model"), Decimal(entry["cost"]), entry["at"], False
                )(record)

        draft = {u: r.copy() for u, r in self._dict.items()}
        apply_all(draft)
        self._save_dict(draft)
        self._dict = draft
        keys = {e["key"] for e in pending}

        def forget(entry: dict[str, Any]) -> None:
            if entry["key"] not in keys:
                raise _Keep()

        try:
            return self.outbox.deliver(forget)
        except _Keep:
            return len(self.outbox.pending())

    def _deliver_one(self, entry: dict[str, Any]) -> None:
        try:
            self._send_charge(entry)
        except (UnknownUserError, InvalidInputError, BudgetExceededError) as exc:
            logger.warning("dropping undeliverable cost %s: %s", entry, exc)

    def pending(self) -> int:
        """Costs recorded here that the service has not acknowledged yet."""
        return len(self.outbox.pending())

    # -- the store interface -------------------------------------------------------------------------
    def get(self, user: str) -> UserRecord | None:
        if self._connect() == "litellm":
            assert self._dict is not None
            record = self._dict.get(user)
            return None if record is None else self._with_pending(user, record)
        response = self.http.request("GET", self._user_path(user))
        if response.status_code == 404:
            self._known.pop(user, None)
            return None
        self._check_auth(response)
        if response.status_code >= 400:
            raise StoreError(f"budget service at {self.api_base}: {_message(response)}")
        return self._record_from(user, json_of(response))

    def users(self) -> list[str]:
        if self._connect() == "litellm":
            assert self._dict is not None
            return list(self._dict)
        data = self._call("GET", self._users_path)
        return [str(u) for u in data.get("users", [])] if isinstance(data, dict) else []

    def records(self) -> dict[str, UserRecord]:
        if self._connect() == "litellm":
            assert self._dict is not None
            return dict(self._dict)
        return super().records()

    def put(self, user: str, record: UserRecord) -> UserRecord:
        """Create or replace the user's budget (the service starts its spend at zero)."""
        if self._connect() == "litellm":

            def put(draft: dict[str, UserRecord]) -> UserRecord:
                draft[user] = record
                return record

            result: UserRecord = self._change_dict(put)
            return result
        body = {
            "total_budget": str(record.total_budget),
            "duration": record.period.name if record.period is not None else None,
            "created_at": record.created_at,
        }
        return self._record_from(user, self._call("PUT", self._user_path(user), body))

    def update(self, user: str, change: Callable[[UserRecord], None]) -> UserRecord:
        if self._connect() == "atomic":
            raise StoreError("a hosted store changes records only by charge, reset and roll")

        def apply(draft: dict[str, UserRecord]) -> UserRecord:
            record = draft.get(user)
            if record is None:
                raise UnknownUserError(user, self.project)
            change(record)
            return record

        result: UserRecord = self._change_dict(apply)
        return result

    def charge(
        self,
        user: str,
        model: str | None,
        amount: Decimal,
        now: float,
        *,
        within_budget: bool = False,
        idempotency_key: str | None = None,
    ) -> UserRecord:
        entry: dict[str, Any] = {
            "user": user,
            "model": model,
            "cost": str(amount),
            "key": idempotency_key or uuid.uuid4().hex,
            "at": now,
        }
        try:
            protocol = self._connect()
            if protocol == "atomic":
                entry["within_budget"] = within_budget
                return self._send_charge(entry)
            return self.update(user, charge_change(user, model, amount, now, within_budget))
        except StoreUnavailableError as exc:
            if within_budget:
                raise  # a hold that cannot be checked must not be assumed
            return self._keep(entry, exc)

    def _keep(self, entry: dict[str, Any], exc: StoreUnavailableError) -> UserRecord:
        with self._lock:
            if self._protocol == "litellm" and self._dict is not None:
                if entry["user"] not in self._dict:
                    raise UnknownUserError(entry["user"], self.project) from None
                known: UserRecord | None = self._dict[entry["user"]]
            else:
                known = self._known.get(entry["user"])
            self.outbox.append(entry)
            logger.warning("%s; kept the cost in %s to deliver later", exc, self.outbox.path)
            if known is None:
                raise StoreUnavailableError(
                    f"{exc}; the cost was kept in {self.outbox.path} and will be delivered "
                    "when the service is back"
                ) from exc
            return self._with_pending(entry["user"], known)

    def _with_pending(self, user: str, record: UserRecord) -> UserRecord:
        """``record`` with the user's undelivered costs added."""
        if not self.outbox.has_pending():
            return record
        record = record.copy()
        for entry in self.outbox.pending():
            if entry["user"] == user:
                change = charge_change(
                    user, entry.get("model"), Decimal(entry["cost"]), entry["at"], False
                )
                change(record)
        return record

    def reset(self, user: str) -> UserRecord:
        if self._connect() == "litellm":
            return super().reset(user)
        return self._record_from(user, self._call("POST", self._user_path(user, "/reset")))

    def roll(self, user: str, now: float) -> UserRecord:
        if self._connect() == "litellm":
            return super().roll(user, now)
        return self._record_from(user, self._call("POST", self._user_path(user, "/roll")))

    def delete(self, user: str) -> bool:
        if self._connect() == "litellm":

            def remove(draft: dict[str, UserRecord]) -> None:
                draft.pop(user, None)

            existed = user in (self._dict or {})
            self._change_dict(remove)
            return existed
        data = self._call("DELETE", self._user_path(user))
        return bool(isinstance(data, dict) and data.get("deleted"))

    def replace_all(self, records: dict[str, UserRecord]) -> None:
        if self._connect() == "litellm":

            def replace(draft: dict[str, UserRecord]) -> None:
                draft.clear()
                draft.update(records)

            self._change_dict(replace)
            return
        self._save_dict(records)

    def save(self) -> dict[str, Any]:
        """Deliver pending costs and, in LiteLLM's protocol, save the whole dict; the service's
        answer, or ``{"status": "pending", "pending": n, ...}`` while costs wait undelivered."""
        try:
            protocol = self._connect()
            if protocol == "litellm":
                with self._lock:
                    assert self._dict is not None
                    answer = self._save_dict(self._dict)
            else:
                answer = {"status": "success"}
        except StoreUnavailableError as exc:
            answer = {"status": "error", "message": str(exc)}
        waiting = self.pending()
        if waiting:
            return {
                "status": "pending",
                "pending": waiting,
                "message": f"{waiting} cost(s) not yet delivered to {self.api_base}; kept in "
                f"{self.outbox.path}",
            }
        return answer

    def close(self) -> None:
        self.http.close()


class _Keep(Exception):
    """An outbox entry appeared after the delivery began: keep it and the rest."""


def _message(response: Any) -> str:
    data = json_of(response)
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    text: str = response.text[:200]
    return text
