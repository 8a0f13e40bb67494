"""Budgets held in memory: :class:`MemoryState` (the data and its indexes, which the JSON file
store persists) and :class:`MemoryStore` (``memory://``: one process, gone at exit; for tests
and short-lived scripts)."""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .. import history
from ..history import DEFAULT_RETENTION, HistoryEvent
from ..ledger import Changes, Outcome
from ..records import HoldRecord, UserRecord
from .base import register
from .python_ledger import PythonLedgerStore

#: How long a hold is kept after it ended (expired, settled or released), so that a late settle
#: still finds it and a repeated settle answers as the first one did (seconds).
HOLD_RETENTION = 86_400.0
#: How long an idempotency key is remembered (seconds).
KEY_RETENTION = 86_400.0
#: Ended holds kept at most (the oldest go first), so a busy process's memory stays bounded.
MAX_ENDED_HOLDS = 100_000
#: Changes between two prunings of ended holds and old keys.
PRUNE_EVERY = 1024


class MemoryState:
    """Records, holds and idempotency keys of one project, with the indexes the ledger reads
    (children by parent, open holds by budget): a :class:`~budget_manager.ledger.LedgerState`."""

    __slots__ = ("_by_level", "_children", "holds", "keys", "records")

    def __init__(self) -> None:
        self.records: dict[str, UserRecord] = {}
        self.holds: dict[str, HoldRecord] = {}
        self.keys: dict[str, tuple[str, float]] = {}
        self._children: dict[str, set[str]] = {}
        self._by_level: dict[str, set[str]] = {}

    def copy(self) -> MemoryState:
        """A copy to change without changing this one (records and holds are never changed in
        place, so the dictionaries are copied, not what they hold)."""
        clone = MemoryState()
        clone.records = dict(self.records)
        clone.holds = dict(self.holds)
        clone.keys = dict(self.keys)
        clone._children = {k: set(v) for k, v in self._children.items()}
        clone._by_level = {k: set(v) for k, v in self._by_level.items()}
        return clone

    # -- LedgerState -----------------------------------------------------------------------------
    def record(self, user: str) -> UserRecord | None:
        return self.records.get(user)

    def hold(self, hold_id: str) -> HoldRecord | None:
        return self.holds.get(hold_id)

    def holds_touching(self, user: str) -> list[HoldRecord]:
        ids = self._by_level.get(user)
        return [self.holds[i] for i in ids] if ids else []

    def children(self, user: str) -> Iterable[str]:
        return self._children.get(user, ())

    def seen(self, key: str) -> str | None:
        found = self.keys.get(key)
        return found[0] if found is not None else None

    # -- changing --------------------------------------------------------------------------------
    def set_record(self, user: str, record: UserRecord | None) -> None:
        """Store (None: remove) one record, keeping the children index."""
        old = self.records.get(user)
        old_parent = old.parent if old is not None else None
        new_parent = record.parent if record is not None else None
        if old_parent != new_parent:
            if old_parent is not None:
                siblings = self._children.get(old_parent)
                if siblings is not None:
                    siblings.discard(user)
                    if not siblings:
                        del self._children[old_parent]
            if new_parent is not None:
                self._children.setdefault(new_parent, set()).add(user)
        if record is None:
            self.records.pop(user, None)
        else:
            self.records[user] = record

    def set_hold(self, hold: HoldRecord) -> None:
        """Store one hold, keeping the index of open holds by budget."""
        self.holds[hold.hold_id] = hold
        self._index(hold, hold.state == "open")

    def drop_hold(self, hold_id: str) -> None:
        """Forget a hold."""
        hold = self.holds.pop(hold_id, None)
        if hold is not None:
            self._index(hold, False)

    def _index(self, hold: HoldRecord, is_open: bool) -> None:
        for level, _ in hold.levels:
            ids = self._by_level.get(level)
            if is_open:
                if ids is None:
                    self._by_level[level] = {hold.hold_id}
                else:
                    ids.add(hold.hold_id)
            elif ids is not None:
                ids.discard(hold.hold_id)
                if not ids:
                    del self._by_level[level]

    def remember(self, key: str, fingerprint: str, at: float) -> None:
        self.keys[key] = (fingerprint, at)

    def apply(self, changes: Changes, now: float) -> None:
        """Make ``changes`` (of a ledger operation) part of the state."""
        for user, record in changes.records.items():
            self.set_record(user, record)
        for hold in changes.holds.values():
            self.set_hold(hold)
        if changes.key is not None:
            self.remember(changes.key[0], changes.key[1], now)

    def replace(self, records: dict[str, UserRecord]) -> None:
        """Make ``records`` the whole user dict (holds and keys stay)."""
        self.records = {}
        self._children = {}
        for user, record in records.items():
            self.set_record(user, record)

    def prune(self, now: float) -> bool:
        """Forget holds that ended and keys that expired long enough ago; whether any were."""
        stale_holds = [
            h.hold_id
            for h in self.holds.values()
            if max(h.expires_at, h.created_at) + HOLD_RETENTION < now
        ]
        ended = sum(1 for h in self.holds.values() if h.state != "open") - len(stale_holds)
        if ended > MAX_ENDED_HOLDS:
            stale = set(stale_holds)
            extra = (
                h.hold_id
                for h in self.holds.values()
                if h.state != "open" and h.hold_id not in stale
            )
            stale_holds += itertools.islice(extra, ended - MAX_ENDED_HOLDS)
        for hold_id in stale_holds:
            self.drop_hold(hold_id)
        stale_keys = [k for k, (_, at) in self.keys.items() if at + KEY_RETENTION < now]
        for key in stale_keys:
            del self.keys[key]
        return bool(stale_holds or stale_keys)

    def open_holds(self) -> list[HoldRecord]:
        return [h for h in self.holds.values() if h.state == "open"]


class EventLog:
    """History events kept in memory: at most ``MAX_EVENTS``, none older than the retention."""

    #: Most events kept (the oldest go first).
    MAX_EVENTS = 1_000_000

    def __init__(self, retention: float = DEFAULT_RETENTION) -> None:
        self.retention = retention
        self.events: collections.deque[HistoryEvent] = collections.deque(maxlen=self.MAX_EVENTS)

    def keep(self, events: Iterable[HistoryEvent]) -> None:
        self.events.extend(events)

    def prune(self) -> None:
        """Forget the events older than the retention, as of the newest event."""
        if not self.events:
            return
        cutoff = self.events[-1].time - self.retention
        while self.events and self.events[0].time < cutoff:
            self.events.popleft()

    def query(
        self,
        user: str | None,
        model: str | None,
        since: float | None,
        until: float | None,
        limit: int | None,
    ) -> list[HistoryEvent]:
        return history.latest(history.selected(self.events, user, model, since, until), limit)


@register
class MemoryStore(PythonLedgerStore):
    """Budgets in this process's memory; see the module docstring."""

    schemes = ("memory",)

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        history_retention: float | str = DEFAULT_RETENTION,
    ) -> None:
        """``history_retention``: how long history events are kept (seconds, or a span such
        as ``"90d"``)."""
        import time

        self._events = EventLog(history.span(history_retention))
        self._state = MemoryState()
        self._lock = threading.RLock()
        self._clock = clock or time.time
        self._changes = 0

    @classmethod
    def from_url(cls, url: str, project: str, **options: Any) -> MemoryStore:
        return cls(**options)

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._state.records)} users)"

    def _apply(
        self, operation: Callable[..., tuple[Outcome, Changes | None]], *args: Any, **kwargs: Any
    ) -> Outcome:
        with self._lock:
            outcome, changes = operation(self._state, *args, **kwargs)
            if changes is not None:
                now = self._clock()
                self._state.apply(changes, now)
                self._events.keep(changes.events)
                self._changes += 1
                if self._changes % PRUNE_EVERY == 0:
                    self._state.prune(now)
                    self._events.prune()
        return outcome

    def _replace(self, records: dict[str, UserRecord]) -> None:
        with self._lock:
            self._state.replace(records)

    def get(self, user: str) -> UserRecord | None:
        return self._state.records.get(user)

    def users(self) -> list[str]:
        with self._lock:
            return list(self._state.records)

    def records(self) -> dict[str, UserRecord]:
        with self._lock:
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
