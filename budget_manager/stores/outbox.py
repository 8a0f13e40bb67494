"""Charges a hosted client could not deliver, kept durably on the client until they are.

One JSON line per charge in a file per (service, project), appended and fsynced under a lock
file, so several processes can share it. Delivery rewrites the file (atomic rename) with the
charges still undelivered. Each charge carries its idempotency key: delivering it twice (two
processes, or a crash after sending) counts it once on a service that honours keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
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


class Outbox:
    """The undelivered charges of one service and project."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with self._locked():
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.path.parent)

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
        """Call ``send`` on each entry in order, removing those it returns from; stop at the
        first that raises (that exception propagates). The number still pending."""
        with self._locked():
            entries = self._read()
            done = 0
            try:
                for entry in entries:
                    send(entry)
                    done += 1
            finally:
                if done:
                    self._rewrite(entries[done:])
            return len(entries) - done

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


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
