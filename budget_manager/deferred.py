"""Costs of calls already made that the store could not take when they were recorded: kept
durably in an :class:`~budget_manager.stores.outbox.Outbox` and delivered, each with its
idempotency key (or its hold id), by the next operation that reaches the store, in this process
or a later one. A cost the store refuses for good goes to the outbox's dead-letter file."""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from .errors import (
    BudgetExceededError,
    InvalidInputError,
    StoreUnavailableError,
    UnknownHoldError,
    UnknownUserError,
)
from .money import to_text
from .operations import Call, Flow
from .records import HoldRecord, UserRecord, hold_from_json, hold_to_json, loads
from .stores.outbox import Outbox, Refused, default_dir, outbox_path

logger = logging.getLogger("budget_manager")


class DeferredCosts:
    """The kept costs of one store and project."""

    def __init__(
        self, where: str, project: str, folder: str | os.PathLike[str] | None = None
    ) -> None:
        """``where`` names the store (its URL or path); ``folder`` holds the outbox files
        (default ``$BUDGET_MANAGER_OUTBOX_DIR``, else ``~/.cache/budget_manager``)."""
        self.outbox = Outbox(outbox_path(Path(folder) if folder else default_dir(), where, project))
        self._waiting = self.outbox.has_pending()  # kept by an earlier process, maybe
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.outbox.path

    @property
    def waiting(self) -> bool:
        """Whether costs may be kept (cheap: no file access)."""
        return self._waiting

    def keep_charge(
        self, user: str, model: str | None, amount: Decimal, key: str | None, at: float
    ) -> None:
        """Keep a cost recorded by ``update_cost``."""
        self._keep(
            {
                "kind": "charge",
                "user": user,
                "model": model,
                "cost": to_text(amount),
                "key": key or uuid.uuid4().hex,
                "at": at,
            }
        )

    def keep_settle(self, hold: HoldRecord, amount: Decimal, model: str | None, at: float) -> None:
        """Keep the settle of a hold."""
        self._keep(
            {
                "kind": "settle",
                "user": hold.user,
                "model": model,
                "cost": to_text(amount),
                "key": hold.hold_id,
                "hold": json.loads(hold_to_json(hold)),
                "at": at,
            }
        )

    def _keep(self, entry: dict[str, Any]) -> None:
        self.outbox.append(entry)
        self._waiting = True

    def estimate(self, user: str, record: UserRecord) -> UserRecord:
        """``record`` with the user's kept costs added (what the store will hold)."""
        if not self._waiting:
            return record
        estimated = record.copy()
        for entry in self.outbox.pending():
            if entry.get("user") == user:
                estimated.current_cost += Decimal(entry["cost"])
        return estimated

    def deliver(self) -> Flow[int]:
        """Send what is kept (a flow of ledger calls; nothing when nothing may be kept); how many
        are still kept. Stops, keeping the rest, at the first that the store cannot take now."""
        if not self._waiting:
            return 0
        if not self._lock.acquire(blocking=False):
            return self.pending()  # another thread or task of this process is delivering
        try:
            delivered: list[str] = []
            refused: dict[str, Refused] = {}
            try:
                for entry in self.outbox.pending():
                    try:
                        yield from _send(entry)
                    except Refused as refusal:
                        refused[entry["key"]] = refusal
                    else:
                        delivered.append(entry["key"])
            except StoreUnavailableError:
                pass
            finally:
                left = self.outbox.settle(delivered, refused)
            self._waiting = left > 0
            return left
        finally:
            self._lock.release()

    def pending(self) -> int:
        """How many costs are kept, undelivered."""
        return len(self.outbox.pending()) if self._waiting or self.outbox.has_pending() else 0

    def report(self, answer: dict[str, Any]) -> dict[str, Any]:
        """``save_data()``'s answer, telling of kept and refused costs."""
        waiting = self.pending()
        if waiting:
            answer = {
                "status": "pending",
                "pending": waiting,
                "message": f"{waiting} cost(s) not yet delivered; kept in {self.outbox.path}",
            }
        dead = self.outbox.dead_letters()
        if dead:
            refused = (
                f"{dead} cost(s) refused for good are in {self.outbox.dead_path}; remove the "
                "file once they are dealt with"
            )
            if answer.get("status") == "success":
                answer = {"status": "dead_letter"}
            message = answer.get("message")
            answer["message"] = f"{message}; {refused}" if message else refused
            answer["dead_letter"] = dead
            answer["dead_letter_path"] = str(self.outbox.dead_path)
        return answer


def _send(entry: dict[str, Any]) -> Flow[None]:
    """Deliver one kept cost: Refused when the store will never take it."""
    try:
        amount = Decimal(str(entry["cost"]))
        if entry.get("kind") == "settle":
            known = hold_from_json(loads(json.dumps(entry["hold"])))
            yield Call("settle", (entry["key"], amount, entry.get("model")), {"known": known})
        else:
            yield Call("charge", (entry["user"], entry.get("model"), amount), {"key": entry["key"]})
    except (UnknownUserError, UnknownHoldError, InvalidInputError, BudgetExceededError) as exc:
        raise Refused(str(exc), getattr(exc, "status", None)) from exc
    except (KeyError, TypeError, ArithmeticError) as exc:
        raise Refused(f"the kept entry is damaged: {exc!r}") from exc
