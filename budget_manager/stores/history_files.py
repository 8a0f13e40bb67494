"""The JSON file store's history: append-only files of one JSON line per event, one file per
UTC day (``<budgets.json>.history/2026-11-27.jsonl``), beside the store's files and never touched
by its compaction. Days older than the retention are deleted whole; a query reads only the days
its time range covers."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from .. import history
from ..errors import StoreError
from ..history import HistoryEvent

logger = logging.getLogger("budget_manager")
_DAY = 86_400


class HistoryFiles:
    """One folder of daily event files. Appends are made by the store while it holds its
    exclusive lock, so every process's events go in the order their changes were made."""

    def __init__(self, folder: Path, retention: float, fsync: bool = False) -> None:
        self.folder = folder
        self.retention = retention
        self._fsync = fsync
        self._day = -1  # days since the epoch of the file open for appending
        self._fd = -1
        self._pid = os.getpid()

    def append(self, events: Iterable[HistoryEvent]) -> None:
        """Write the events (of one change) to their days' files."""
        if self._pid != os.getpid():  # a forked child opens its own
            self._fd, self._day, self._pid = -1, -1, os.getpid()
        lines: list[str] = []
        day = -1
        for event in events:
            event_day = int(event.time // _DAY)
            if lines and event_day != day:
                self._write(day, lines)
                lines = []
            day = event_day
            lines.append(history.encode(event) + "\n")
        if lines:
            self._write(day, lines)

    def _write(self, day: int, lines: list[str]) -> None:
        data = "".join(lines).encode("utf-8", "surrogatepass")
        try:
            if day != self._day:
                self._open(day)
            os.write(self._fd, data)
            if self._fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise StoreError(
                f"cannot append to the history in {str(self.folder)!r}: {exc}"
            ) from exc

    def _open(self, day: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.folder.mkdir(exist_ok=True)
        path = self.folder / f"{_name(day)}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._day = day

    def query(
        self,
        user: str | None,
        model: str | None,
        since: float | None,
        until: float | None,
        limit: int | None,
    ) -> list[HistoryEvent]:
        found = history.selected(self._read(since, until), user, model, since, until)
        return history.latest(found, limit)

    def _read(self, since: float | None, until: float | None) -> Iterator[HistoryEvent]:
        first = None if since is None else int(since // _DAY)
        last = None if until is None else int(until // _DAY)
        for day, path in self._days():
            if (first is not None and day < first) or (last is not None and day > last):
                continue
            try:
                with open(path, "rb") as lines:
                    for number, line in enumerate(lines, 1):
                        try:
                            yield history.decode(line)
                        except (ValueError, TypeError) as exc:
                            logger.warning("skipped a damaged line %d of %s: %s", number, path, exc)
            except FileNotFoundError:  # deleted meanwhile (past the retention)
                continue

    def _days(self) -> list[tuple[int, Path]]:
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            day = _day_of(name)
            if day is not None:
                found.append((day, self.folder / name))
        found.sort()
        return found

    def prune(self) -> None:
        """Delete the files of days that ended before the retention began, as of the newest
        day kept (the history's own clock)."""
        days = self._days()
        if not days:
            return
        oldest = days[-1][0] - int(self.retention // _DAY)
        for day, path in days:
            if day < oldest and day != self._day:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def close(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = -1


def _name(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def _day_of(name: str) -> int | None:
    if not name.endswith(".jsonl"):
        return None
    try:
        moment = datetime.strptime(name[:-6], "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return int(moment.timestamp() // _DAY)
