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
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Sequence
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
from ..history import HistoryEvent
from ..ledger import Changes, Outcome
from ..money import to_text
from ..operations import (
    DEFAULT_TTL,
    Announcer,
    Call,
    Flow,
    Operations,
    Progress,
    blocking,
    drive,
)
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
from .memory import EventLog, MemoryState
from .python_ledger import PythonLedgerStore

Protocol = Literal["atomic", "litellm"]
Clock = Callable[[], float]
#: Answers that say nothing about the request itself: credentials, and "not now".
_AUTH_STATUSES = frozenset({401, 403, 407})
_LATER_STATUSES = frozenset({408, 429})


class ServiceAuthError(StoreUnavailableError):
    """The budget service does not accept this client's credentials."""


#: The operations a hosted store does, by name.
LEDGER_OPERATIONS = frozenset(
    [
        "get",
        "users",
        "records",
        "history",
        "holds",
        "available",
        "put",
        "delete",
        "charge",
        "hold",
        "settle",
        "release",
        "reset",
        "roll",
        "roll_all",
        "replace_all",
        "save",
    ]
)


def checked_base(api_base: object, project: object) -> tuple[str, str]:
    """The service's URL (without a trailing slash) and the project's name, checked."""
    if not isinstance(api_base, str) or not api_base.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"api_base must be an http(s) URL, got {api_base!r}", field="api_base"
        )
    return api_base.rstrip("/"), names.check(project, "project")


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
        self.api_base, self.project = checked_base(api_base, project)
        self.http = HttpClient(
            self.api_base, headers, timeout=timeout, retries=retries, backoff=backoff
        )
        self.protocol: Protocol | None = protocol
        self._clock = clock
        self._target: AtomicService | Operations | None = None
        self._listeners: list[Listener] = []
        self._watched: set[Decimal] = set()
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
                    self.protocol, loaded = drive(self.http, probe(self.api_base, self.project))
                if self.protocol == "atomic":
                    self._target = AtomicService(self.http, self.project)
                else:
                    store = LiteLLMService(self.http, self.project, loaded)
                    self._target = Operations(store, self._clock)
                for listener in self._listeners:
                    self._target.subscribe(listener)
                if self._watched:
                    self._target.watch(self._watched)
            return self._target

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(event)`` after every change made through this store."""
        with self._lock:
            self._listeners.append(listener)
            if self._target is not None:
                self._target.subscribe(listener)

    def watch(self, fractions: Iterable[Decimal]) -> None:
        """Also have the service mark and announce crossings of ``fractions``."""
        with self._lock:
            self._watched.update(fractions)
            if self._target is not None:
                self._target.watch(self._watched)

    # -- the operations, done by whoever speaks this service's protocol ------------------------
    def get(self, user: str) -> UserRecord | None:
        return self._ledger().get(user)

    def users(self) -> list[str]:
        return self._ledger().users()

    def records(self) -> dict[str, UserRecord]:
        return self._ledger().records()

    def holds(self, user: str | None = None) -> list[HoldRecord]:
        return self._ledger().holds(user)

    def history(self, *args: Any) -> list[HistoryEvent]:
        return self._ledger().history(*args)

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

    def roll_all(self, progress: Progress | None = None) -> int:
        return self._ledger().roll_all(progress)

    def replace_all(self, records: dict[str, UserRecord]) -> None:
        self._ledger().replace_all(records)

    def save(self) -> dict[str, Any]:
        return self._ledger().save()

    def close(self) -> None:
        self.http.close()


def probe(api_base: str, project: str) -> Flow[tuple[Protocol, dict[str, UserRecord] | None]]:
    """``"atomic"`` for a service whose capabilities say so; ``"litellm"`` (with the project's
    user dict, loaded on the way) once its ``/get_budget`` answers as LiteLLM's protocol does;
    else InvalidInputError naming the URL. A flow of requests to the service's HTTP client."""
    response = yield Call("request", ("GET", "/v1/capabilities"), {"any_status": True})
    body = json_of(response)
    if response.status_code == 200 and isinstance(body, dict) and body.get("atomic") is True:
        return "atomic", None
    try:
        loaded = yield from load(api_base, project)
    except StoreError as exc:
        raise InvalidInputError(
            f"api_base {api_base} does not look like a budget service: GET "
            f"/v1/capabilities answered HTTP {response.status_code}, and {exc}; check the URL",
            field="api_base",
        ) from None
    return "litellm", loaded


def _check_auth(api_base: str, response: Any) -> None:
    if response.status_code in _AUTH_STATUSES:
        raise ServiceAuthError(
            f"budget service at {api_base} refused the request "
            f"(HTTP {response.status_code}): {_message(response)}; check the headers"
        )


class ServiceFlows(Announcer):
    """The operations on this project's budget service, one request each (the service runs them
    atomically), as flows of requests to an HTTP client; driven by :class:`AtomicService` and
    by its asyncio twin."""

    def __init__(self, api_base: str, project: str) -> None:
        super().__init__()  # watched fractions travel with each charge and settle
        self.api_base = api_base
        self.project = project
        self._base = f"/v1/projects/{names.to_segment(project)}"

    def _user_path(self, user: str, suffix: str = "") -> str:
        return f"{self._base}/users/{names.to_segment(names.check(user, 'user'))}{suffix}"

    def _hold_path(self, hold_id: str, suffix: str = "") -> str:
        return f"{self._base}/holds/{names.to_segment(names.check(hold_id, 'hold_id'))}{suffix}"

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        what: str,
        hold_id: str | None = None,
    ) -> Flow[dict[str, Any]]:
        """The service's answer (``what`` names the request in errors, ``hold_id`` the hold
        it is about)."""
        payload = json.dumps(body) if body is not None else None
        response = yield Call("request", (method, path, payload))
        if response.status_code >= 400:
            raise _refusal(self.api_base, response, what, hold_id)
        data = json_of(response)
        if not isinstance(data, dict):
            raise StoreError(f"budget service at {self.api_base} answered {what} with no JSON")
        return data

    def _alerting(self, body: dict[str, Any]) -> None:
        """Ask the service to mark and announce the fractions this client watches."""
        if self.thresholds:
            body["alert_at"] = [to_text(f) for f in self.thresholds]

    # -- reads ---------------------------------------------------------------------------------
    def _get(self, user: str) -> Flow[UserRecord | None]:
        try:
            data = yield from self._call(
                "GET", self._user_path(user), what=f"the budget of {user!r}"
            )
        except UnknownUserError:
            return None
        return _record(user, data)

    def _users(self) -> Flow[list[str]]:
        data = yield from self._call("GET", f"{self._base}/users", what="the list of users")
        return [str(u) for u in data.get("users", [])]

    def _records(self) -> Flow[dict[str, UserRecord]]:
        data = yield from self._call(
            "POST", "/get_budget", {"project_name": self.project}, what="the user dict"
        )
        users = data.get("data") if data.get("status") == "success" else {}
        return {str(u): from_json(str(u), r) for u, r in (users or {}).items()}

    def _open_holds(self, user: str | None) -> Flow[dict[str, Any]]:
        query = "" if user is None else f"?user={names.to_segment(names.check(user, 'user'))}"
        found = yield from self._call("GET", f"{self._base}/holds{query}", what="the open holds")
        return found

    def _holds(self, user: str | None = None) -> Flow[list[HoldRecord]]:
        found = yield from self._open_holds(user)
        return [hold_from_json(h) for h in found.get("holds", [])]

    def _history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> Flow[list[HistoryEvent]]:
        query = {
            name: value
            for name, value in (
                ("user", user),
                ("model", model),
                ("since", None if since is None else repr(float(since))),
                ("until", None if until is None else repr(float(until))),
                ("limit", None if limit is None else str(limit)),
            )
            if value is not None
        }
        path = f"{self._base}/history"
        if query:
            path += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        found = yield from self._call("GET", path, what="the history")
        return [_event(e) for e in found.get("events", [])]

    def _available(self, user: str) -> Flow[Decimal]:
        found = yield from self._open_holds(user)
        return Decimal(str(found["available"]))

    # -- changes -------------------------------------------------------------------------------
    def _put(self, user: str, record: UserRecord) -> Flow[UserRecord]:
        body = {
            "total_budget": to_text(record.total_budget),
            "duration": record.period.name if record.period is not None else None,
            "created_at": record.created_at,
            "parent": record.parent,
            "on_unknown_model": record.on_unknown_model,
            "on_store_error": record.on_store_error,
        }
        data = yield from self._call(
            "PUT", self._user_path(user), body, what=f"the budget of {user!r}"
        )
        stored = _record(user, data)
        self.announce("create", user, time.time(), Outcome(stored), amount=record.total_budget)
        return stored

    def _delete(self, user: str) -> Flow[bool]:
        try:
            data = yield from self._call(
                "DELETE", self._user_path(user), what=f"the budget of {user!r}"
            )
        except UnknownUserError:
            return False
        deleted = bool(data.get("deleted"))
        if deleted:
            self.announce("delete", user, time.time())
        return deleted

    def _charge(
        self,
        user: str,
        model: str | None,
        amount: Decimal,
        *,
        limit_check: bool = False,
        key: str | None = None,
        tokens: dict[str, int] | None = None,
    ) -> Flow[Outcome]:
        if model is not None:
            names.check_model(model)
        body: dict[str, Any] = {
            "cost": to_text(amount),
            "model": model,
            "idempotency_key": key or uuid.uuid4().hex,
            "within_budget": limit_check,
        }
        self._alerting(body)
        if tokens:
            body["tokens"] = tokens
        what = _described(user, model, amount)
        data = yield from self._call("POST", self._user_path(user, "/cost"), body, what=what)
        outcome = _outcome(user, data)
        self.announce(
            "charge", user, time.time(), outcome, amount=amount, model=model, tokens=tokens
        )
        return outcome

    def _hold(
        self,
        user: str,
        amount: Decimal,
        *,
        ttl: float = DEFAULT_TTL,
        hold_id: str | None = None,
        model: str | None = None,
        limit_check: bool = True,
    ) -> Flow[Outcome]:
        body = {
            "user": names.check(user, "user"),
            "amount": to_text(amount),
            "ttl": ttl,
            "hold_id": hold_id,
            "model": model,
        }
        data = yield from self._call(
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

    def _settle(
        self,
        hold_id: str,
        amount: Decimal,
        model: str | None = None,
        *,
        known: HoldRecord | None = None,
        tokens: dict[str, int] | None = None,
    ) -> Flow[Outcome]:
        body: dict[str, Any] = {"cost": to_text(amount), "model": model}
        self._alerting(body)
        if tokens:
            body["tokens"] = tokens
        if known is not None:
            body["hold"] = {
                "user": known.user,
                "amount": to_text(known.amount),
                "levels": [{"user": user, "start": start} for user, start in known.levels],
                "expires_at": known.expires_at,
                "created_at": known.created_at,
                "model": known.model,
            }
        data = yield from self._call(
            "POST",
            self._hold_path(hold_id, "/settle"),
            body,
            what=f"the settle of hold {hold_id!r}",
            hold_id=hold_id,
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

    def _release(self, hold_id: str) -> Flow[Outcome]:
        data = yield from self._call(
            "DELETE", self._hold_path(hold_id), what=f"the release of {hold_id!r}", hold_id=hold_id
        )
        outcome = _outcome("", data)
        user = outcome.hold.user if outcome.hold else ""
        self.announce("release", user, time.time(), outcome, hold_id=hold_id)
        return outcome

    def _reset(self, user: str) -> Flow[UserRecord]:
        data = yield from self._call(
            "POST", self._user_path(user, "/reset"), what=f"the reset of {user!r}"
        )
        outcome = _outcome(user, data)
        self.announce("reset", user, time.time(), outcome)
        assert outcome.record is not None
        return outcome.record

    def _roll(self, user: str) -> Flow[UserRecord | None]:
        data = yield from self._call(
            "POST", self._user_path(user, "/roll"), what=f"the period of {user!r}"
        )
        outcome = _outcome(user, data)
        if outcome.rolled:
            self.announce("roll", user, time.time(), outcome)
        return outcome.record

    def _roll_all(self, progress: Progress | None = None) -> Flow[int]:
        """The service rolls them all in one request (``progress`` is told once, at the end)."""
        data = yield from self._call("POST", f"{self._base}/roll", what="the periods of every user")
        rolled = int(data.get("rolled", 0))
        if progress is not None:
            progress(rolled, rolled)
        return rolled

    def _replace_all(self, records: dict[str, UserRecord]) -> Flow[None]:
        yield from save_dict(self.api_base, self.project, records)

    def _save(self) -> Flow[dict[str, Any]]:
        return {"status": "success"}
        yield  # a flow that asks for nothing


class AtomicService(ServiceFlows):
    """:class:`ServiceFlows` over a (synchronous) :class:`HttpClient`."""

    def __init__(self, http: HttpClient, project: str) -> None:
        super().__init__(http.api_base, project)
        self.http = http

    get = blocking(ServiceFlows._get, "http")
    users = blocking(ServiceFlows._users, "http")
    records = blocking(ServiceFlows._records, "http")
    holds = blocking(ServiceFlows._holds, "http")
    history = blocking(ServiceFlows._history, "http")
    available = blocking(ServiceFlows._available, "http")
    put = blocking(ServiceFlows._put, "http")
    delete = blocking(ServiceFlows._delete, "http")
    charge = blocking(ServiceFlows._charge, "http")
    hold = blocking(ServiceFlows._hold, "http")
    settle = blocking(ServiceFlows._settle, "http")
    release = blocking(ServiceFlows._release, "http")
    reset = blocking(ServiceFlows._reset, "http")
    roll = blocking(ServiceFlows._roll, "http")
    roll_all = blocking(ServiceFlows._roll_all, "http")
    replace_all = blocking(ServiceFlows._replace_all, "http")
    save = blocking(ServiceFlows._save, "http")


class LiteLLMService(PythonLedgerStore):
    """A service that speaks only LiteLLM's two endpoints: the ledger runs here over the user
    dict it loaded, and every change is saved whole (last writer wins between clients, as in
    LiteLLM's protocol). Holds and the history live in this process only."""

    def __init__(
        self, http: HttpClient, project: str, loaded: dict[str, UserRecord] | None = None
    ) -> None:
        self.http = http
        self.project = project
        self._state = MemoryState()
        self._state.replace(drive(http, load(http.api_base, project)) if loaded is None else loaded)
        self._events = EventLog()
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
                    drive(self.http, save_dict(self.http.api_base, self.project, draft.records))
                self._state = draft
                self._events.keep(changes.events)
            return outcome

    def _replace(self, records: dict[str, UserRecord]) -> None:
        with self._lock:
            drive(self.http, save_dict(self.http.api_base, self.project, records))
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

    def history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HistoryEvent]:
        with self._lock:
            return self._events.query(user, model, since, until, limit)

    def save(self) -> dict[str, Any]:
        with self._lock:
            return drive(
                self.http, save_dict(self.http.api_base, self.project, self._state.records)
            )


def load(api_base: str, project: str) -> Flow[dict[str, UserRecord]]:
    """The project's user dict from ``POST /get_budget`` (LiteLLM's protocol)."""
    response = yield Call("request", ("POST", "/get_budget", json.dumps({"project_name": project})))
    _check_auth(api_base, response)
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


def save_dict(api_base: str, project: str, users: dict[str, UserRecord]) -> Flow[dict[str, Any]]:
    """Replace the project's user dict with ``POST /set_budget`` (LiteLLM's protocol)."""
    user_dict = dump_user_dict(users).strip()
    body = f'{{"project_name": {json.dumps(project)}, "user_dict": {user_dict}}}'
    response = yield Call("request", ("POST", "/set_budget", body))
    _check_auth(api_base, response)
    answer = json_of(response)
    if response.status_code >= 400:
        raise StoreError(
            f"budget service at {api_base}/set_budget refused the user dict "
            f"(HTTP {response.status_code}): {_message(response)}"
        )
    return answer if isinstance(answer, dict) else {"status": "success"}


def _refusal(
    api_base: str, response: Any, what: str, hold_id: str | None = None
) -> BudgetManagerError:
    """The error for a 4xx answer to ``what`` (about the hold ``hold_id``, if given)."""
    _check_auth(api_base, response)
    status = response.status_code
    data = json_of(response)
    field = data.get("field") if isinstance(data, dict) else None
    message = _message(response)
    if status == 404 and field == "user":
        user = data.get("user") if isinstance(data, dict) else None
        return UnknownUserError(user if isinstance(user, str) else what)
    if status == 404 and field == "hold_id":
        named = data.get("hold_id") if isinstance(data, dict) else None
        return UnknownHoldError(named if isinstance(named, str) else hold_id or what)
    if status == 409 and field == "cost":
        budget = data.get("user") if isinstance(data, dict) else None
        return BudgetExceededError(
            0.0, 0.0, message, user=budget if isinstance(budget, str) else None
        )
    if status == 409:
        return IdempotencyConflictError(message, field=field if isinstance(field, str) else None)
    if status in _LATER_STATUSES:
        return ServiceUnavailableError(
            f"budget service at {api_base} could not take {what} now (HTTP {status}): {message}",
            f"HTTP {status}",
        )
    return InvalidInputError(
        f"budget service at {api_base} refused {what} (HTTP {status}): {message}",
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
        tuple(Alert.from_json(a) for a in alerts),
        bool(data.get("replayed")),
    )


def _event(data: dict[str, Any]) -> HistoryEvent:
    """An event as the service's history answer gives it."""
    amount = data.get("amount")
    return HistoryEvent(
        float(data["time"]),
        str(data["kind"]),
        str(data["user"]),
        data.get("model"),
        Decimal(str(data.get("cost", 0))),
        None if amount is None else Decimal(str(amount)),
        data.get("tokens"),
        data.get("hold_id"),
        data.get("window_start"),
        data.get("window_end"),
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
