"""Budgets behind an HTTP budget service (``client_type="hosted"``).

:class:`HostedStore` asks the service once for ``/v1/capabilities``:

- a service that offers atomic operations (this project's own) gets one small request per
  operation (:class:`AtomicService`): a cost is ``POST /v1/projects/{p}/users/{u}/cost`` with an
  idempotency key (retried with the same key), a hold ``POST /v1/projects/{p}/holds``, and so on;
  the service runs the operations layer, with its own clock;
- any other service is spoken to in LiteLLM's protocol exactly (:class:`LiteLLMService`): the
  whole user dict is loaded with ``POST /get_budget`` and saved with ``POST /set_budget`` after
  every change; holds then live in this process only.

A URL that answers neither protocol recognisably is refused when the store is made; one that
does not answer at all is taken for a service that is down (asked again on the next operation,
while the costs recorded meanwhile wait in the manager's outbox: see
:mod:`budget_manager.deferred`).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Literal

from .. import names
from ..errors import (
    BudgetExceededError,
    BudgetManagerError,
    IdempotencyConflictError,
    InvalidInputError,
    StoreError,
    StoreUnavailableError,
    UnknownHoldError,
    UnknownUserError,
)
from ..events import Alert, Listener
from ..ledger import Changes, Outcome
from ..money import to_text
from ..operations import DEFAULT_TTL, Announcer, Operations
from ..records import (
    HoldRecord,
    UserRecord,
    dump_user_dict,
    from_json,
    hold_from_json,
)
from .http import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    HttpClient,
    ServiceUnavailableError,
    json_of,
)
from .memory import MemoryState
from .python_ledger import PythonLedgerStore

Protocol = Literal["atomic", "litellm"]
Clock = Callable[[], float]
#: Answers that say nothing about the request itself: credentials, and "not now".
_AUTH_STATUSES = frozenset({401, 403, 407})
_LATER_STATUSES = frozenset({408, 429})


class ServiceAuthError(StoreUnavailableError):
    """The budget service does not accept this client's credentials."""


class HostedStore:
    """One project's budgets on a budget service: the operations of
    :class:`~budget_manager.operations.Operations`, done by the service (see the module
    docstring)."""

    def __init__(
        self,
        api_base: str,
        project: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        protocol: Protocol | None = None,
        clock: Clock = time.time,
    ) -> None:
        """``protocol``: force ``"atomic"`` or ``"litellm"`` instead of asking the service.

        InvalidInputError, naming the URL, when ``api_base`` answers but is not a budget
        service; a service that cannot be reached is asked again on the next operation."""
        if not isinstance(api_base, str) or not api_base.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"api_base must be an http(s) URL, got {api_base!r}", field="api_base"
            )
        self.api_base = api_base.rstrip("/")
        self.project = names.check(project, "project")
        self.http = HttpClient(
            self.api_base, headers, timeout=timeout, retries=retries, backoff=backoff
        )
        self.protocol: Protocol | None = protocol
        self._clock = clock
        self._target: AtomicService | Operations | None = None
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        with contextlib.suppress(StoreUnavailableError):  # asked again on the next operation
            self._ledger()

    def __repr__(self) -> str:
        return f"HostedStore({self.api_base!r}, project={self.project!r})"

    def _ledger(self) -> AtomicService | Operations:
        """Who does the operations: asks the service which protocol it speaks, the first time."""
        target = self._target
        if target is not None:
            return target
        with self._lock:
            if self._target is None:
                loaded = None
                if self.protocol is None:
                    self.protocol, loaded = _probe(self.http, self.project)
                if self.protocol == "atomic":
                    self._target = AtomicService(self.http, self.project)
                else:
                    store = LiteLLMService(self.http, self.project, loaded)
                    self._target = Operations(store, self._clock)
                for listener in self._listeners:
                    self._target.subscribe(listener)
            return self._target

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(event)`` after every change made through this store."""
        with self._lock:
            self._listeners.append(listener)
            if self._target is not None:
                self._target.subscribe(listener)

    # -- the operations, done by whoever speaks this service's protocol ------------------------
    def get(self, user: str) -> UserRecord | None:
        return self._ledger().get(user)

    def users(self) -> list[str]:
        return self._ledger().users()

    def records(self) -> dict[str, UserRecord]:
        return self._ledger().records()

    def holds(self, user: str | None = None) -> list[HoldRecord]:
        return self._ledger().holds(user)

    def available(self, user: str) -> Decimal:
        return self._ledger().available(user)

    def put(self, user: str, record: UserRecord) -> UserRecord:
        return self._ledger().put(user, record)

    def delete(self, user: str) -> bool:
        return self._ledger().delete(user)

    def charge(self, user: str, model: str | None, amount: Decimal, **options: Any) -> Outcome:
        return self._ledger().charge(user, model, amount, **options)

    def hold(self, user: str, amount: Decimal, **options: Any) -> Outcome:
        return self._ledger().hold(user, amount, **options)

    def settle(
        self, hold_id: str, amount: Decimal, model: str | None = None, **options: Any
    ) -> Outcome:
        return self._ledger().settle(hold_id, amount, model, **options)

    def release(self, hold_id: str) -> Outcome:
        return self._ledger().release(hold_id)

    def reset(self, user: str) -> UserRecord:
        return self._ledger().reset(user)

    def roll(self, user: str) -> UserRecord | None:
        return self._ledger().roll(user)

    def roll_all(self) -> int:
        return self._ledger().roll_all()

    def replace_all(self, records: dict[str, UserRecord]) -> None:
        self._ledger().replace_all(records)

    def save(self) -> dict[str, Any]:
        return self._ledger().save()

    def close(self) -> None:
        self.http.close()


def _probe(http: HttpClient, project: str) -> tuple[Protocol, dict[str, UserRecord] | None]:
    """``"atomic"`` for a service whose capabilities say so; ``"litellm"`` (with the project's
    user dict, loaded on the way) once its ``/get_budget`` answers as LiteLLM's protocol does;
    else InvalidInputError naming the URL."""
    response = http.request("GET", "/v1/capabilities", any_status=True)
    body = json_of(response)
    if response.status_code == 200 and isinstance(body, dict) and body.get("atomic") is True:
        return "atomic", None
    try:
        return "litellm", _load(http, project)
    except StoreError as exc:
        raise InvalidInputError(
            f"api_base {http.api_base} does not look like a budget service: GET "
            f"/v1/capabilities answered HTTP {response.status_code}, and {exc}; check the URL",
            field="api_base",
        ) from None


def _check_auth(http: HttpClient, response: Any) -> None:
    if response.status_code in _AUTH_STATUSES:
        raise ServiceAuthError(
            f"budget service at {http.api_base} refused the request "
            f"(HTTP {response.status_code}): {_message(response)}; check the headers"
        )


class AtomicService(Announcer):
    """This project's budget service, one request per operation (it runs them atomically)."""

    def __init__(self, http: HttpClient, project: str) -> None:
        super().__init__()
        self.http = http
        self.project = project
        self._base = f"/v1/projects/{names.to_segment(project)}"

    def _user_path(self, user: str, suffix: str = "") -> str:
        return f"{self._base}/users/{names.to_segment(names.check(user, 'user'))}{suffix}"

    def _hold_path(self, hold_id: str, suffix: str = "") -> str:
        return f"{self._base}/holds/{names.to_segment(names.check(hold_id, 'hold_id'))}{suffix}"

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, what: str
    ) -> dict[str, Any]:
        """The service's answer (``what`` names the request in errors)."""
        payload = json.dumps(body) if body is not None else None
        response = self.http.request(method, path, payload)
        if response.status_code >= 400:
            raise _refusal(self.http, response, what)
        data = json_of(response)
        if not isinstance(data, dict):
            raise StoreError(f"budget service at {self.http.api_base} answered {what} with no JSON")
        return data

    # -- reads ---------------------------------------------------------------------------------
    def get(self, user: str) -> UserRecord | None:
        try:
            data = self._call("GET", self._user_path(user), what=f"the budget of {user!r}")
        except UnknownUserError:
            return None
        return _record(user, data)

    def users(self) -> list[str]:
        data = self._call("GET", f"{self._base}/users", what="the list of users")
        return [str(u) for u in data.get("users", [])]

    def records(self) -> dict[str, UserRecord]:
        data = self._call(
            "POST", "/get_budget", {"project_name": self.project}, what="the user dict"
        )
        users = data.get("data") if data.get("status") == "success" else {}
        return {str(u): from_json(str(u), r) for u, r in (users or {}).items()}

    def _holds(self, user: str | None) -> dict[str, Any]:
        query = "" if user is None else f"?user={names.to_segment(names.check(user, 'user'))}"
        return self._call("GET", f"{self._base}/holds{query}", what="the open holds")

    def holds(self, user: str | None = None) -> list[HoldRecord]:
        return [hold_from_json(h) for h in self._holds(user).get("holds", [])]

    def available(self, user: str) -> Decimal:
        return Decimal(str(self._holds(user)["available"]))

    # -- changes -------------------------------------------------------------------------------
    def put(self, user: str, record: UserRecord) -> UserRecord:
        body = {
            "total_budget": to_text(record.total_budget),
            "duration": record.period.name if record.period is not None else None,
            "created_at": record.created_at,
            "parent": record.parent,
            "on_unknown_model": record.on_unknown_model,
            "on_store_error": record.on_store_error,
        }
        data = self._call("PUT", self._user_path(user), body, what=f"the budget of {user!r}")
        stored = _record(user, data)
        self.announce("create", user, time.time(), Outcome(stored), amount=record.total_budget)
        return stored

    def delete(self, user: str) -> bool:
        try:
            data = self._call("DELETE", self._user_path(user), what=f"the budget of {user!r}")
        except UnknownUserError:
            return False
        deleted = bool(data.get("deleted"))
        if deleted:
            self.announce("delete", user, time.time())
        return deleted

    def charge(
        self,
        user: str,
        model: str | None,
        amount: Decimal,
        *,
        limit_check: bool = False,
        key: str | None = None,
        tokens: dict[str, int] | None = None,
    ) -> Outcome:
        if model is not None:
            names.check_model(model)
        body = {
            "cost": to_text(amount),
            "model": model,
            "idempotency_key": key or uuid.uuid4().hex,
            "within_budget": limit_check,
        }
        what = _described(user, model, amount)
        outcome = _outcome(
            user, self._call("POST", self._user_path(user, "/cost"), body, what=what)
        )
        self.announce(
            "charge", user, time.time(), outcome, amount=amount, model=model, tokens=tokens
        )
        return outcome

    def hold(
        self,
        user: str,
        amount: Decimal,
        *,
        ttl: float = DEFAULT_TTL,
        hold_id: str | None = None,
        model: str | None = None,
        limit_check: bool = True,
    ) -> Outcome:
        body = {
            "user": names.check(user, "user"),
            "amount": to_text(amount),
            "ttl": ttl,
            "hold_id": hold_id,
            "model": model,
        }
        data = self._call(
            "POST", f"{self._base}/holds", body, what=f"a hold of {amount} on {user!r}"
        )
        outcome = _outcome(user, data)
        self.announce(
            "hold",
            user,
            time.time(),
            outcome,
            amount=amount,
            model=model,
            hold_id=outcome.hold.hold_id if outcome.hold else hold_id,
        )
        return outcome

    def settle(
        self,
        hold_id: str,
        amount: Decimal,
        model: str | None = None,
        *,
        known: HoldRecord | None = None,
        tokens: dict[str, int] | None = None,
    ) -> Outcome:
        body: dict[str, Any] = {"cost": to_text(amount), "model": model}
        if known is not None:
            body["hold"] = {
                "user": known.user,
                "amount": to_text(known.amount),
                "levels": [{"user": user, "start": start} for user, start in known.levels],
                "expires_at": known.expires_at,
                "created_at": known.created_at,
                "model": known.model,
            }
        data = self._call(
            "POST",
            self._hold_path(hold_id, "/settle"),
            body,
            what=f"the settle of hold {hold_id!r}",
        )
        outcome = _outcome(known.user if known else "", data)
        user = outcome.hold.user if outcome.hold else ""
        self.announce(
            "settle",
            user,
            time.time(),
            outcome,
            amount=amount,
            model=model,
            hold_id=hold_id,
            tokens=tokens,
        )
        return outcome

    def release(self, hold_id: str) -> Outcome:
        data = self._call("DELETE", self._hold_path(hold_id), what=f"the release of {hold_id!r}")
        outcome = _outcome("", data)
        user = outcome.hold.user if outcome.hold else ""
        self.announce("release", user, time.time(), outcome, hold_id=hold_id)
        return outcome

    def reset(self, user: str) -> UserRecord:
        data = self._call("POST", self._user_path(user, "/reset"), what=f"the reset of {user!r}")
        outcome = _outcome(user, data)
        self.announce("reset", user, time.time(), outcome)
        assert outcome.record is not None
        return outcome.record

    def roll(self, user: str) -> UserRecord | None:
        data = self._call("POST", self._user_path(user, "/roll"), what=f"the period of {user!r}")
        outcome = _outcome(user, data)
        if outcome.rolled:
            self.announce("roll", user, time.time(), outcome)
        return outcome.record

    def roll_all(self) -> int:
        data = self._call("POST", f"{self._base}/roll", what="the periods of every user")
        return int(data.get("rolled", 0))

    def replace_all(self, records: dict[str, UserRecord]) -> None:
        _save_dict(self.http, self.project, records)

    def save(self) -> dict[str, Any]:
        return {"status": "success"}


class LiteLLMService(PythonLedgerStore):
    """A service that speaks only LiteLLM's two endpoints: the ledger runs here over the user
    dict it loaded, and every change is saved whole (last writer wins between clients, as in
    LiteLLM's protocol). Holds live in this process only."""

    def __init__(
        self, http: HttpClient, project: str, loaded: dict[str, UserRecord] | None = None
    ) -> None:
        self.http = http
        self.project = project
        self._state = MemoryState()
        self._state.replace(_load(http, project) if loaded is None else loaded)
        self._lock = threading.RLock()

    @classmethod
    def from_url(cls, url: str, project: str, **options: Any) -> LiteLLMService:
        return cls(HttpClient(url, options.get("headers")), project)

    def __repr__(self) -> str:
        return f"LiteLLMService({self.http.api_base!r}, project={self.project!r})"

    def _apply(
        self, operation: Callable[..., tuple[Outcome, Changes | None]], *args: Any, **kwargs: Any
    ) -> Outcome:
        with self._lock:
            draft = self._state.copy()
            outcome, changes = operation(draft, *args, **kwargs)
            if changes is not None:
                draft.apply(changes, time.time())
                if changes.records:
                    _save_dict(self.http, self.project, draft.records)
                self._state = draft
            return outcome

    def _replace(self, records: dict[str, UserRecord]) -> None:
        with self._lock:
            _save_dict(self.http, self.project, records)
            self._state.replace(records)

    def get(self, user: str) -> UserRecord | None:
        return self._state.records.get(user)

    def users(self) -> list[str]:
        return list(self._state.records)

    def records(self) -> dict[str, UserRecord]:
        return dict(self._state.records)

    def holds(self, user: str | None = None) -> list[HoldRecord]:
        with self._lock:
            if user is None:
                return self._state.open_holds()
            return self._state.holds_touching(user)

    def save(self) -> dict[str, Any]:
        with self._lock:
            return _save_dict(self.http, self.project, self._state.records)


def _load(http: HttpClient, project: str) -> dict[str, UserRecord]:
    response = http.request("POST", "/get_budget", json.dumps({"project_name": project}))
    _check_auth(http, response)
    data = json_of(response)
    if response.status_code == 200 and isinstance(data, dict):
        users = data.get("data")
        if data.get("status") == "error":
            return {}  # nothing stored for this project yet
        if data.get("status") == "success" and isinstance(users, dict | None):
            return {str(u): from_json(str(u), r) for u, r in (users or {}).items()}
    raise StoreError(
        f"POST /get_budget answered HTTP {response.status_code} {response.text[:120]!r}"
    )


def _save_dict(http: HttpClient, project: str, users: dict[str, UserRecord]) -> dict[str, Any]:
    user_dict = dump_user_dict(users).strip()
    body = f'{{"project_name": {json.dumps(project)}, "user_dict": {user_dict}}}'
    response = http.request("POST", "/set_budget", body)
    _check_auth(http, response)
    answer = json_of(response)
    if response.status_code >= 400:
        raise StoreError(
            f"budget service at {http.api_base}/set_budget refused the user dict "
            f"(HTTP {response.status_code}): {_message(response)}"
        )
    return answer if isinstance(answer, dict) else {"status": "success"}


def _refusal(http: HttpClient, response: Any, what: str) -> BudgetManagerError:
    """The error for a 4xx answer to ``what``."""
    _check_auth(http, response)
    status = response.status_code
    data = json_of(response)
    field = data.get("field") if isinstance(data, dict) else None
    message = _message(response)
    if status == 404 and field == "user":
        user = data.get("user") if isinstance(data, dict) else None
        return UnknownUserError(user if isinstance(user, str) else what)
    if status == 404 and field == "hold_id":
        return UnknownHoldError(data.get("hold_id") if isinstance(data, dict) else what)
    if status == 409 and field == "cost":
        budget = data.get("user") if isinstance(data, dict) else None
        return BudgetExceededError(
            0.0, 0.0, message, user=budget if isinstance(budget, str) else None
        )
    if status == 409:
        return IdempotencyConflictError(message, field=field if isinstance(field, str) else None)
    if status in _LATER_STATUSES:
        return ServiceUnavailableError(
            f"budget service at {http.api_base} could not take {what} now "
            f"(HTTP {status}): {message}",
            f"HTTP {status}",
        )
    return InvalidInputError(
        f"budget service at {http.api_base} refused {what} (HTTP {status}): {message}",
        field=field if isinstance(field, str) else None,
    )


def _record(user: str, data: dict[str, Any]) -> UserRecord:
    record = data.get("data")
    if not isinstance(record, dict):
        raise StoreError(f"the budget service sent no record for {user!r}")
    return from_json(user, record)


def _outcome(user: str, data: dict[str, Any]) -> Outcome:
    """An operation's outcome from the service's answer."""
    record = data.get("data")
    hold = data.get("hold")
    alerts: Sequence[Any] = data.get("alerts") or ()
    return Outcome(
        from_json(user, record) if isinstance(record, dict) else None,
        hold_from_json(hold) if isinstance(hold, dict) else None,
        tuple(data.get("rolled") or ()),
        tuple(Alert(**a) for a in alerts),
        bool(data.get("replayed")),
    )


def _described(user: str, model: str | None, amount: Decimal) -> str:
    """A cost as errors name it."""
    of_model = f" (model {names.shown(model)})" if model is not None else ""
    return f"the cost of {to_text(amount)} for user {names.shown(user)}{of_model}"


def _message(response: Any) -> str:
    data = json_of(response)
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    text: str = response.text[:200]
    return text
