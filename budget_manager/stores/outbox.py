"""Charges a hosted client could not deliver, kept durably on the client until they are.

One JSON line per charge in a file per (service, project), appended and fsynced under a lock
file, so several processes can share it. Delivery rewrites the file (atomic rename) with the
charges still undelivered. Each charge carries its idempotency key: delivering it twice (two
processes, or a crash after sending) counts it once on a service that honours keys.

A charge the service refuses for good (it will never accept it, however often it is sent) is
moved to the dead-letter file beside the outbox (``outbox-<id>.dead.jsonl``), with the reason,
so it neither blocks the charges behind it nor is lost. Nothing reads that file back: it is
for people, who remove it once they have dealt with what it holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

ENV_DIR = "BUDGET_MANAGER_OUTBOX_DIR"
logger = logging.getLogger("budget_manager")


def default_dir() -> Path:
    """``$BUDGET_MANAGER_OUTBOX_DIR``, else ``~/.cache/budget_manager``."""
    configured = os.environ.get(ENV_DIR)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "budget_manager"


def outbox_path(folder: Path, api_base: str, project: str) -> Path:
    """The outbox file of one service and project."""
    digest = hashlib.sha256(f"{api_base.rstrip('/')}\0{project}".encode()).hexdigest()[:24]
    return folder / f"outbox-{digest}.jsonl"


class Refused(Exception):
    """The service refused a charge for good; ``reason`` is its answer."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Outbox:
    """The undelivered charges of one service and project, and those it refused for good."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dead_path = path.with_name(path.name.removesuffix(".jsonl") + ".dead.jsonl")
        self._lock_path = str(path) + ".lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append(self, entry: dict[str, Any]) -> None:
        """Keep ``entry`` durably (fsynced before this returns)."""
        with self._locked():
            _append(self.path, [entry])

    def has_pending(self) -> bool:
        """Whether anything may be waiting (cheap: one stat)."""
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def pending(self) -> list[dict[str, Any]]:
        """Undelivered entries, oldest first."""
        with self._locked():
            return self._read()

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        entries = []
        for line in data.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line torn by a crash mid-append was never acknowledged
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def deliver(self, send: Callable[[dict[str, Any]], None]) -> int:
        """Call ``send`` on each entry in order, removing those it returns from and moving
        those it raises :class:`Refused` for to the dead-letter file; stop at the first other
        exception (which propagates), keeping that entry and the rest. The number still pending."""
        with self._locked():
            entries = self._read()
            done = 0
            dead: list[dict[str, Any]] = []
            try:
                for entry in entries:
                    try:
                        send(entry)
                    except Refused as refusal:
                        dead.append(self._dead_letter(entry, refusal))
                    done += 1
            finally:
                if dead:  # first: an entry may be in both files after a crash, never in neither
                    _append(self.dead_path, dead)
                if done:
                    self._rewrite(entries[done:])
            return len(entries) - done

    def settle(self, delivered: Collection[str], refused: dict[str, Refused]) -> int:
        """Remove the entries whose keys are in ``delivered`` and move those in ``refused`` (key:
        why) to the dead-letter file; the number still pending."""
        with self._locked():
            entries = self._read()
            dead = [self._dead_letter(e, refused[e["key"]]) for e in entries if e["key"] in refused]
            if dead:
                _append(self.dead_path, dead)
            rest = [e for e in entries if e["key"] not in delivered and e["key"] not in refused]
            if len(rest) != len(entries):
                self._rewrite(rest)
            return len(rest)

    def _dead_letter(self, entry: dict[str, Any], refusal: Refused) -> dict[str, Any]:
        logger.error(
            "the budget service refused a kept cost for good (%s); moved it to %s: %s",
            refusal.reason,
            self.dead_path,
            entry,
        )
        return {
            **entry,
            "refused": refusal.reason,
            "status": refusal.status,
            "moved_at": time.time(),
        }

    def dead_letters(self) -> int:
        """How many refused entries the dead-letter file holds."""
        try:
            with open(self.dead_path, "rb") as file:
                return sum(1 for line in file if line.strip())
        except FileNotFoundError:
            return 0

    def _rewrite(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        temporary = str(self.path) + ".tmp"
        body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        _fsync_dir(self.path.parent)


def _append(path: Path, entries: list[dict[str, Any]]) -> None:
    """Append ``entries`` to ``path`` as JSON lines, fsynced (the caller holds the lock)."""
    body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
