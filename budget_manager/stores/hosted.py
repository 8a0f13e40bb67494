"""Budgets behind an HTTP budget service (``client_type="hosted"``).

The client asks the service once for ``/v1/capabilities``. A service that offers atomic
operations (this project's own) gets one small request per change: a cost is
``POST /v1/projects/{p}/users/{u}/cost`` with a fresh idempotency key, retried with the same key.
Any other service is spoken to in LiteLLM's protocol exactly: the whole user dict is loaded with
``POST /get_budget`` and saved with ``POST /set_budget`` after every change and on ``save()``.
A URL that answers neither protocol recognisably is refused when the store is made; one that
does not answer at all is taken for a service that is down.

A cost that cannot be delivered because the service is unreachable (or does not accept this
client's credentials) is kept in an :class:`~budget_manager.stores.outbox.Outbox` and delivered
on the next operation that reaches the service (and on ``save()``, which reports how many are
still pending). A kept cost the service refuses for good (any other 4xx answer) is moved to the
outbox's dead-letter file, so it blocks none of the costs behind it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from .. import names
from ..errors import (
    BudgetExceededError,
    BudgetManagerError,
    InvalidInputError,
    StoreError,
    StoreUnavailableError,
    UnknownUserError,
)
from ..money import to_text
from ..records import UserRecord, dump_user_dict, from_json
from .base import BudgetStore, charge_change, register
from .http import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    HttpClient,
    ServiceUnavailableError,
    json_of,
)
from .outbox import Outbox, Refused, default_dir, outbox_path

logger = logging.getLogger("budget_manager")
Protocol = Literal["atomic", "litellm"]
#: Answers that say nothing about the request itself: credentials, and "not now".
_AUTH_STATUSES = frozenset({401, 403, 407})
_LATER_STATUSES = frozenset({408, 429})


class ServiceAuthError(StoreError):
    """The budget service does not accept this client's credentials."""


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
        ``$BUDGET_MANAGER_OUTBOX_DIR``).

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
        folder = Path(outbox_dir) if outbox_dir is not None else default_dir()
        self.outbox = Outbox(outbox_path(folder, self.api_base, project))
        self._protocol: Protocol | None = protocol
        self._lock = threading.RLock()
        self._known: dict[str, UserRecord] = {}  # atomic: last record seen per user
        self._dict: dict[str, UserRecord] | None = None  # litellm: the user dict as saved
        self._users_path = f"/v1/projects/{names.to_segment(project)}/users"
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
                self._protocol = self._probe()
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

    def _probe(self) -> Protocol:
        """``"atomic"`` for a service whose capabilities say so; else ``"litellm"`` once its
        ``/get_budget`` answers as LiteLLM's protocol does (the dict is loaded on the way)."""
        response = self.http.request("GET", "/v1/capabilities", any_status=True)
        body = json_of(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("atomic") is True:
            return "atomic"
        self._dict = self._load(f"GET /v1/capabilities answered HTTP {response.status_code}, ")
        return "litellm"

    def _check_auth(self, response: Any) -> None:
        if response.status_code in _AUTH_STATUSES:
            raise ServiceAuthError(
                f"budget service at {self.api_base} refused the request "
                f"(HTTP {response.status_code}): {_message(response)}; check the headers"
            )

    def _user_path(self, user: str, suffix: str = "") -> str:
        return f"{self._users_path}/{names.to_segment(names.check(user, 'user'))}{suffix}"

    # -- LiteLLM's protocol ------------------------------------------------------------------------
    def _load(self, probed: str = "") -> dict[str, UserRecord]:
        body = json.dumps({"project_name": self.project})
        response = self.http.request("POST", "/get_budget", body)
        self._check_auth(response)
        data = json_of(response)
        if response.status_code == 200 and isinstance(data, dict):
            users = data.get("data")
            if data.get("status") == "error":
                return {}  # nothing stored for this project yet
            if data.get("status") == "success" and isinstance(users, dict | None):
                return {str(u): from_json(str(u), r) for u, r in (users or {}).items()}
        raise InvalidInputError(
            f"api_base {self.api_base} does not look like a budget service: {probed}"
            f"POST /get_budget answered HTTP {response.status_code} "
            f"{response.text[:120]!r}; check the URL",
            field="api_base",
        )

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
    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, what: str, user: str
    ) -> Any:
        """The service's answer to a request about ``user`` (``what`` names it in errors)."""
        payload = json.dumps(body) if body is not None else None
        response = self.http.request(method, path, payload)
        if response.status_code >= 400:
            raise self._refusal(response, what, user)
        return json_of(response)

    def _refusal(self, response: Any, what: str, user: str) -> BudgetManagerError:
        """The error for a 4xx answer to ``what``."""
        self._check_auth(response)
        status = response.status_code
        data = json_of(response)
        field = data.get("field") if isinstance(data, dict) else None
        message = _message(response)
        if status == 404 and field == "user":
            return UnknownUserError(user, self.project)
        if status == 409 and field == "cost":
            return BudgetExceededError(0.0, 0.0, message)
        if status in _LATER_STATUSES:
            return ServiceUnavailableError(
                f"budget service at {self.api_base} could not take {what} now "
                f"(HTTP {status}): {message}",
                f"HTTP {status}",
            )
        return InvalidInputError(
            f"budget service at {self.api_base} refused {what} (HTTP {status}): {message}",
            field=field if isinstance(field, str) else None,
        )

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
        user = entry["user"]
        path = self._user_path(user, "/cost")
        data = self._call("POST", path, body, what=_described(entry), user=user)
        return self._record_from(user, data)

    # -- the outbox ---------------------------------------------------------------------------------
    def _flush(self) -> int:
        """Deliver pending costs; how many are still pending."""
        if self._protocol == "atomic":
            return self.outbox.deliver(self._deliver_one)
        if self._dict is None:
            return len(self.outbox.pending())
        draft = {u: r.copy() for u, r in self._dict.items()}
        applied: set[str] = set()
        refused: dict[str, Refused] = {}
        for entry in self.outbox.pending():
            record = draft.get(entry["user"])
            if record is None:
                refused[entry["key"]] = Refused(
                    f"user {entry['user']!r} has no budget in project {self.project!r}"
                )
                continue
            try:
                _entry_change(entry)(record)
            except (InvalidInputError, KeyError, ValueError, ArithmeticError) as exc:
                refused[entry["key"]] = Refused(str(exc))
                continue
            applied.add(entry["key"])
        if applied:
            self._save_dict(draft)
            self._dict = draft
        return self.outbox.settle(applied, refused)

    def _deliver_one(self, entry: dict[str, Any]) -> None:
        """Send a kept cost: Refused when the service will never take it."""
        try:
            self._send_charge(entry)
        except (UnknownUserError, InvalidInputError, BudgetExceededError) as exc:
            raise Refused(str(exc)) from exc

    def pending(self) -> int:
        """Costs recorded here that the service has not acknowledged yet."""
        return len(self.outbox.pending())

    # -- the store interface -------------------------------------------------------------------------
    def get(self, user: str) -> UserRecord | None:
        path = self._user_path(user)
        if self._connect() == "litellm":
            assert self._dict is not None
            record = self._dict.get(user)
            return None if record is None else self._with_pending(user, record)
        try:
            data = self._call("GET", path, what=f"the budget of user {user!r}", user=user)
        except UnknownUserError:
            self._known.pop(user, None)
            return None
        return self._record_from(user, data)

    def users(self) -> list[str]:
        if self._connect() == "litellm":
            assert self._dict is not None
            return list(self._dict)
        data = self._call("GET", self._users_path, what="the list of users", user="")
        return [str(u) for u in data.get("users", [])] if isinstance(data, dict) else []

    def records(self) -> dict[str, UserRecord]:
        if self._connect() == "litellm":
            assert self._dict is not None
            return dict(self._dict)
        return super().records()

    def put(self, user: str, record: UserRecord) -> UserRecord:
        """Create or replace the user's budget (the service starts its spend at zero)."""
        path = self._user_path(user)
        if self._connect() == "litellm":

            def put(draft: dict[str, UserRecord]) -> UserRecord:
                draft[user] = record
                return record

            result: UserRecord = self._change_dict(put)
            return result
        body = {
            "total_budget": to_text(record.total_budget),
            "duration": record.period.name if record.period is not None else None,
            "created_at": record.created_at,
        }
        data = self._call("PUT", path, body, what=f"the budget of user {user!r}", user=user)
        return self._record_from(user, data)

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
        names.check(user, "user")
        if model is not None:
            names.check_model(model)
        entry: dict[str, Any] = {
            "user": user,
            "model": model,
            "cost": to_text(amount),
            "key": idempotency_key or uuid.uuid4().hex,
            "at": now,
        }
        try:
            protocol = self._connect()
            if protocol == "atomic":
                entry["within_budget"] = within_budget
                return self._send_charge(entry)
            return self.update(user, charge_change(user, model, amount, now, within_budget))
        except (StoreUnavailableError, ServiceAuthError) as exc:
            if within_budget:
                raise  # a hold that cannot be checked must not be assumed
            return self._keep(entry, exc)

    def _keep(self, entry: dict[str, Any], exc: StoreError) -> UserRecord:
        """Keep an undelivered cost in the outbox; the record with it, or an error naming it."""
        entry.pop("within_budget", None)
        what = _described(entry)
        with self._lock:
            if self._protocol == "litellm" and self._dict is not None:
                if entry["user"] not in self._dict:
                    raise UnknownUserError(entry["user"], self.project) from None
                known: UserRecord | None = self._dict[entry["user"]]
            else:
                known = self._known.get(entry["user"])
            self.outbox.append(entry)
            if isinstance(exc, ServiceAuthError):
                raise ServiceAuthError(
                    f"{what} was not delivered: {exc}; it was kept in {self.outbox.path} and "
                    "will be delivered once the service accepts this client's requests"
                ) from exc
            reason = exc.reason if isinstance(exc, ServiceUnavailableError) else str(exc)
            logger.warning(
                "%s was not delivered (budget service at %s unavailable: %s); kept it in %s",
                what,
                self.api_base,
                reason,
                self.outbox.path,
            )
            if known is None:
                raise StoreUnavailableError(
                    f"{what} was not delivered: the budget service at {self.api_base} is "
                    f"unavailable ({reason}); it was kept in {self.outbox.path} and will be "
                    "delivered when the service is back"
                ) from exc
            return self._with_pending(entry["user"], known)

    def _with_pending(self, user: str, record: UserRecord) -> UserRecord:
        """``record`` with the user's undelivered costs added."""
        if not self.outbox.has_pending():
            return record
        record = record.copy()
        for entry in self.outbox.pending():
            if entry["user"] == user:
                with contextlib.suppress(InvalidInputError, KeyError, ValueError, ArithmeticError):
                    _entry_change(entry)(record)
        return record

    def reset(self, user: str) -> UserRecord:
        path = self._user_path(user, "/reset")
        if self._connect() == "litellm":
            return super().reset(user)
        data = self._call("POST", path, what=f"the reset of user {user!r}", user=user)
        return self._record_from(user, data)

    def roll(self, user: str, now: float) -> UserRecord:
        path = self._user_path(user, "/roll")
        if self._connect() == "litellm":
            return super().roll(user, now)
        data = self._call("POST", path, what=f"the period of user {user!r}", user=user)
        return self._record_from(user, data)

    def delete(self, user: str) -> bool:
        path = self._user_path(user)
        if self._connect() == "litellm":

            def remove(draft: dict[str, UserRecord]) -> None:
                draft.pop(user, None)

            existed = user in (self._dict or {})
            self._change_dict(remove)
            return existed
        try:
            data = self._call("DELETE", path, what=f"the budget of user {user!r}", user=user)
        except UnknownUserError:
            return False
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
        answer, or ``{"status": "pending", "pending": n, ...}`` while costs wait undelivered.
        While the dead-letter file holds refused costs, the answer says so: ``"dead_letter"``
        (their number) and ``"dead_letter_path"``, with status ``"dead_letter"`` when nothing is
        pending."""
        try:
            protocol = self._connect()
            if protocol == "litellm":
                with self._lock:
                    assert self._dict is not None
                    answer = self._save_dict(self._dict)
            else:
                answer = {"status": "success"}
        except (StoreUnavailableError, ServiceAuthError) as exc:
            answer = {"status": "error", "message": str(exc)}
        waiting = self.pending()
        if waiting:
            answer = {
                "status": "pending",
                "pending": waiting,
                "message": f"{waiting} cost(s) not yet delivered to {self.api_base}; kept in "
                f"{self.outbox.path}",
            }
        dead = self.outbox.dead_letters()
        if dead:
            refused = (
                f"{dead} cost(s) refused for good by {self.api_base} are in "
                f"{self.outbox.dead_path}; remove the file once they are dealt with"
            )
            if answer.get("status") == "success":
                answer = {"status": "dead_letter"}
            message = answer.get("message")
            answer["message"] = f"{message}; {refused}" if message else refused
            answer["dead_letter"] = dead
            answer["dead_letter_path"] = str(self.outbox.dead_path)
        return answer

    def close(self) -> None:
        self.http.close()


def _entry_change(entry: dict[str, Any]) -> Callable[[UserRecord], None]:
    """The change a kept cost makes to its user's record."""
    return charge_change(
        entry["user"], entry.get("model"), Decimal(entry["cost"]), entry["at"], False
    )


def _described(entry: dict[str, Any]) -> str:
    """A cost as errors name it."""
    model = entry.get("model")
    of_model = f" (model {names.shown(model)})" if model is not None else ""
    return f"the cost of {entry['cost']} for user {names.shown(entry['user'])}{of_model}"


def _message(response: Any) -> str:
    data = json_of(response)
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    text: str = response.text[:200]
    return text
