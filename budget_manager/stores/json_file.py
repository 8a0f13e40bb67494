"""Budgets in a local JSON file that many threads and processes share safely.

Layout, for ``budgets.json``:

- ``budgets.json``: the whole user dict in LiteLLM's ``user_cost.json`` format. It is only ever
  replaced by an atomic rename, so a reader never sees half of one.
- ``budgets.json.journal``: one JSON line per change since that file was written, holding the
  changed user's whole new record. Appending a line is the hot path: its cost does not depend on
  the number of users. Replaying the journal over the snapshot is idempotent.
- ``budgets.json.holds``: open and recently ended holds and recent idempotency keys, as of the
  last compaction (absent while there are none).
- ``budgets.json.lock``: ``flock`` target; writers hold it exclusively, catching-up readers shared.
- ``budgets.json.history/``: the history, one file of JSON lines per UTC day, appended to by each
  change and never compacted (see :mod:`.history_files`).

Every change (a ledger operation: see :mod:`budget_manager.ledger`) is one journal line, however
many records and holds it changes, so a change is applied whole or not at all.

When the journal outgrows the snapshot (and the holds file), on ``save()`` and at exit, the
journal is folded into a new snapshot ("compaction") and replaced by an empty one; about a second
after the last change a background thread brings the main file up to date.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import glob
import hashlib
import logging
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import history, names
from ..errors import CorruptStoreError, InvalidInputError, StoreError
from ..history import DEFAULT_RETENTION, HistoryEvent
from ..ledger import Changes, Outcome
from ..records import (
    MAX_MODELS,
    HoldRecord,
    UserRecord,
    dump_user_dict,
    from_json,
    hold_from_json,
    hold_to_json,
    loads,
    quote,
    to_json,
)
from .base import register
from .history_files import HistoryFiles
from .memory import MemoryState
from .python_ledger import PythonLedgerStore

MIN_COMPACT_BYTES = 1 << 20
LITELLM_FILE = "user_cost.json"
#: What compaction appends to a file name: ``.journal`` and ``.<pid>.<8 hex>.tmp``.
_LONGEST_SUFFIX = len(".journal.4194304.00000000.tmp")
FLUSH_AFTER = 1.0
logger = logging.getLogger("budget_manager")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_path(project: str) -> Path:
    """``user_cost_<project>.json`` in the working folder, one file per project.

    A name made only of ``[A-Za-z0-9._-]`` is used as it is; any other gets a readable slug and
    128 bits of its SHA-256, so two project names never share a file.
    """
    slug = _slug(names.check(project, "project_name"))
    if slug != project:
        slug = f"{slug[:64]}-{_digest(project)[:32]}"
    return Path(f"user_cost_{slug}.json")


def adoptable_paths(project: str) -> list[Path]:
    """Files a new project file takes its users from, first found first: this project's file
    under the 8-digit name of earlier releases, then LiteLLM's ``user_cost.json``."""
    slug = _slug(project)
    earlier = [Path(f"user_cost_{slug}-{_digest(project)[:8]}.json")] if slug != project else []
    return [*earlier, Path(LITELLM_FILE)]


def _slug(project: str) -> str:
    return _SAFE_NAME.sub("_", project).strip("._") or "project"


def _digest(project: str) -> str:
    return hashlib.sha256(project.encode("utf-8", "surrogatepass")).hexdigest()


@register
class JsonFileStore(PythonLedgerStore):
    """A JSON file with an append-only journal; see the module docstring."""

    schemes = ("json", "file")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = False,
        compact_bytes: int | None = None,
        flush_after: float | None = FLUSH_AFTER,
        adopt: Iterable[str | os.PathLike[str]] = (),
        max_models: int = MAX_MODELS,
        history_retention: float | str = DEFAULT_RETENTION,
    ) -> None:
        """``fsync``: fsync every journal append (power-loss durability; slower).
        ``compact_bytes``: smallest journal size that triggers a compaction.
        ``flush_after``: seconds after a change when a background thread brings the main file up
        to date, as LiteLLM's own background saves do (None: only on save(), close() and exit).
        ``adopt``: while the store has no file yet, it starts from the first of these files that
        exists (copied, never changed), e.g. LiteLLM's ``user_cost.json``.
        ``max_models``: distinct models a budget may record in one period (100).
        ``history_retention``: how long history events are kept (seconds, or a span such as
        ``"90d"``), in daily files in the folder ``<path>.history``.
        """
        if isinstance(max_models, bool) or not isinstance(max_models, int) or max_models < 1:
            raise InvalidInputError(
                f"max_models must be a positive integer, got {max_models!r}", field="max_models"
            )
        self.max_models = max_models
        self.path = Path(path).absolute()
        self._adopt = [Path(p).absolute() for p in adopt]
        self._journal_path = str(self.path) + ".journal"
        self._holds_path = Path(str(self.path) + ".holds")
        # os.stat() of bytes skips encoding the path on every call (it is on every change's path).
        self._journal_path_bytes = os.fsencode(self._journal_path)
        self._lock_path = str(self.path) + ".lock"
        self._fsync = fsync
        self._history = HistoryFiles(
            Path(str(self.path) + ".history"), history.span(history_retention), fsync
        )
        self._min_compact = MIN_COMPACT_BYTES if compact_bytes is None else compact_bytes
        self._state = MemoryState()
        self._journal_fd = -1
        self._journal_ino = -1
        self._offset = 0
        self._start = 0  # the journal's bytes before its first change (a compaction's header)
        self._flushed = 0  # the journal offset whose state the main file was last written with
        self._snapshot_size = 0
        self._lock_fd = -1
        self._closed = False
        self._flush_after = flush_after
        self._flush_timer: threading.Timer | None = None
        self._compact_seconds = 0.0
        self._open()
        _LIVE.add(self)

    @classmethod
    def from_url(cls, url: str, project: str, **options: Any) -> JsonFileStore:
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise InvalidInputError(f"{url!r} names no file")
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"JsonFileStore({str(self.path)!r})"

    # -- opening, locking, catching up ---------------------------------------------------------
    def _open(self) -> None:
        self._pid = os.getpid()
        self._mutex = threading.RLock()
        if not self.path.parent.is_dir():
            raise StoreError(f"folder {str(self.path.parent)!r} does not exist")
        self._check_name_length()
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidInputError(f"{str(self.path)!r} is too long a path") from None
            raise StoreError(f"cannot open {self._lock_path!r}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
            self._remove_stale_temporaries()
            self._reload(exclusive=True)
            if (
                self._adopt
                and not self._state.records
                and not self._offset
                and not self.path.exists()
            ):
                self._adopt_first()
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)  # also releases the lock
            if self._journal_fd >= 0:
                os.close(self._journal_fd)
            raise

    def _check_name_length(self) -> None:
        try:
            limit = os.pathconf(self.path.parent, "PC_NAME_MAX")
        except (OSError, ValueError):
            limit = 255
        if len(os.fsencode(self.path.name)) + _LONGEST_SUFFIX > limit:
            raise InvalidInputError(
                f"the budget file name {self.path.name!r} is too long for this file system "
                f"(at most {limit - _LONGEST_SUFFIX} bytes, to leave room for its journal and "
                "temporary files); choose a shorter project name or pass path="
            )

    def _adopt_first(self) -> None:
        """Start from the first adoptable file (holding the exclusive lock, with no file yet)."""
        for source in self._adopt:
            if source != self.path and source.is_file():
                self._state.replace(self._read_user_dict(source)[0])
                self._compact()
                logger.warning(
                    "%s did not exist: it now holds the %d budgets of %s, which was left as it "
                    "was (later changes go to %s only)",
                    self.path,
                    len(self._state.records),
                    source,
                    self.path,
                )
                return

    def _check_process(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        if self._pid != os.getpid():
            # A forked child must not use the parent's descriptors: flock locks belong to the
            # open file description, which parent and child would share.
            for fd in (self._lock_fd, self._journal_fd):
                if fd >= 0:
                    os.close(fd)
            self._journal_fd = self._journal_ino = -1
            self._open()

    def _lock(self, exclusive: bool) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            self._sync(exclusive)
        except BaseException:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            raise

    def _unlock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _sync(self, exclusive: bool) -> None:
        """Apply what other writers appended since we last looked (called holding the lock)."""
        try:
            st = os.stat(self._journal_path_bytes)
        except FileNotFoundError:
            self._reload(exclusive)
            return
        if st.st_ino != self._journal_ino:
            if not self._follow(exclusive):
                self._reload(exclusive)
        elif st.st_size < self._offset:
            self._reload(exclusive)
        elif st.st_size > self._offset:
            self._replay(st.st_size, exclusive)

    def _reload(self, exclusive: bool) -> None:
        records, size = self._read_snapshot()
        state = MemoryState()
        state.replace(records)
        # Compaction rewrites both files, so both count in the journal size that triggers it.
        size += self._read_holds(state)
        fd = os.open(self._journal_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
        self._journal_fd = fd
        self._journal_ino = os.fstat(fd).st_ino
        self._state = state
        self._snapshot_size = size
        self._offset = 0
        first = os.pread(fd, 256, 0)
        self._start = self._flushed = (
            first.find(b"\n") + 1 if first.startswith(_HEADER_START) else 0
        )
        self._replay(os.fstat(fd).st_size, exclusive)

    def _follow(self, exclusive: bool) -> bool:
        """Move on to the journal another process started when it compacted, without reading
        the new snapshot: possible when we have the whole journal it folded (its first line
        names that journal and its final size). Whether it could."""
        if self._journal_fd < 0:
            return False
        final = os.fstat(self._journal_fd).st_size
        if final > self._offset:
            self._replay(final, exclusive)
        if final != self._offset:
            return False
        fd = os.open(self._journal_path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        first = os.pread(fd, 256, 0)
        header = first[: first.find(b"\n") + 1]
        if header != _successor_header(self._journal_ino, final):
            os.close(fd)
            return False
        os.close(self._journal_fd)
        self._journal_fd = fd
        self._journal_ino = os.fstat(fd).st_ino
        self._offset = self._start = self._flushed = len(header)
        try:
            self._snapshot_size = os.stat(self.path).st_size + _size(self._holds_path)
        except FileNotFoundError:
            os.close(fd)
            self._journal_fd = -1
            return False
        self._state.prune(time.time())  # as the compaction did
        self._replay(os.fstat(fd).st_size, exclusive)
        return True

    def _read_snapshot(self) -> tuple[dict[str, UserRecord], int]:
        return self._read_user_dict(self.path)

    @staticmethod
    def _read_user_dict(path: Path) -> tuple[dict[str, UserRecord], int]:
        """The users of a budget file (none if it does not exist) and its size in bytes."""
        try:
            raw = path.read_bytes()
            size = len(raw)
        except FileNotFoundError:
            return {}, 0
        except OSError as exc:
            raise StoreError(f"cannot read {str(path)!r}: {exc}") from exc
        if not raw or raw.isspace():  # strip() would copy it
            raise CorruptStoreError(
                f"{str(path)!r} is empty ({size} bytes). This library never writes an empty "
                "budget file, so it was damaged (truncated, or overwritten by another program); "
                "it was left untouched. Restore it from a backup, or delete it and its .journal "
                "file to start afresh with no budgets."
            )
        try:
            data = loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(
                f"{str(path)!r} is not valid JSON ({exc}); it was left untouched. "
                "Restore it from a backup or move it away to start empty."
            ) from None
        if not isinstance(data, dict):
            raise CorruptStoreError(
                f"{str(path)!r} is not a budget file: its top level is a "
                f"{type(data).__name__}, not an object of users; it was left untouched"
            )
        del raw
        records: dict[str, UserRecord] = {}
        try:
            # Each user's parsed dict is dropped as soon as its record is built, so the parsed
            # document and the records are not both held whole (peak memory of big stores).
            for user in list(data):
                records[str(user)] = from_json(str(user), data.pop(user))
        except CorruptStoreError as exc:
            raise CorruptStoreError(f"{str(path)!r}: {exc}; it was left untouched") from None
        return records, size

    def _read_holds(self, state: MemoryState) -> int:
        """Read the holds file into ``state``; its size."""
        try:
            raw = self._holds_path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"cannot read {str(self._holds_path)!r}: {exc}") from exc
        try:
            data = loads(raw)
            for hold in data.get("holds", []):
                state.set_hold(hold_from_json(hold))
            for key, (fingerprint, at) in data.get("keys", {}).items():
                state.remember(key, fingerprint, float(at))
        except (ValueError, TypeError, AttributeError, CorruptStoreError) as exc:
            raise CorruptStoreError(
                f"{str(self._holds_path)!r} is damaged ({exc}); it was left untouched"
            ) from None
        return len(raw)

    def _replay(self, size: int, exclusive: bool) -> None:
        chunk = os.pread(self._journal_fd, size - self._offset, self._offset)
        complete = chunk.rfind(b"\n") + 1
        if complete:
            for number, line in enumerate(chunk[:complete].splitlines()):
                if line.strip():
                    self._replay_line(line, number)
        self._offset += complete
        if complete < len(chunk) and exclusive:
            # An unterminated last line: its writer died mid-write while holding the lock, so
            # that change never returned to its caller. Cut it off before appending after it.
            os.ftruncate(self._journal_fd, self._offset)

    def _replay_line(self, line: bytes, number: int) -> None:
        try:
            entry = loads(line)
            for part in entry.get("c", (entry,)):
                self._replay_part(part)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, CorruptStoreError) as exc:
            raise CorruptStoreError(
                f"{self._journal_path!r} has a damaged entry near byte {self._offset} "
                f"(line {number + 1} after it): {exc}; the files were left untouched"
            ) from None

    def _replay_part(self, part: dict[str, Any]) -> None:
        state = self._state
        if "u" in part:
            user = part["u"]
            state.set_record(user, None if part.get("del") else from_json(user, part["r"]))
        elif "h" in part:
            state.set_hold(hold_from_json(part["h"]))
        elif "k" in part:
            state.remember(part["k"], part["f"], float(part["t"]))
        elif part.get("clear"):
            state.replace({})
        elif "after" in part:
            pass  # a compaction's first line, read by _follow
        else:
            raise ValueError(f"unknown journal entry {part!r}")

    def _fresh(self) -> None:
        """Catch up with other writers before a read (a stat() when nothing changed)."""
        self._check_process()
        try:
            st = os.stat(self._journal_path_bytes)
        except FileNotFoundError:
            st = None
        if st is not None and st.st_ino == self._journal_ino and st.st_size == self._offset:
            return
        self._lock(exclusive=st is None)
        self._unlock()

    # -- writing -------------------------------------------------------------------------------
    def _journal(self, changes: Changes, now: float) -> None:
        """Append one change as one line (holding the exclusive lock)."""
        records = changes.records
        if len(records) == 1 and not changes.holds and changes.key is None:
            ((user, record),) = records.items()  # the hot path: one record changed
            line = (
                f'{{"u": {quote(user)}, "r": {to_json(record)}}}'
                if record is not None
                else _record_part(user, record)
            )
        else:
            parts = [_record_part(u, r) for u, r in records.items()]
            parts += [f'{{"h": {hold_to_json(h)}}}' for h in changes.holds.values()]
            if changes.key is not None:
                key, fingerprint = changes.key
                parts.append(f'{{"k": {quote(key)}, "f": {quote(fingerprint)}, "t": {now!r}}}')
            line = '{"c": [' + ", ".join(parts) + "]}"
        self._append((line + "\n").encode())

    def _append(self, data: bytes) -> None:
        try:
            written = os.write(self._journal_fd, data)
            while written < len(data):
                written += os.write(self._journal_fd, data[written:])
            if self._fsync:
                os.fsync(self._journal_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._journal_fd, self._offset)
            raise StoreError(f"cannot append to {self._journal_path!r}: {exc}") from exc
        self._offset += len(data)

    def _maybe_compact(self) -> None:
        if self._offset > max(self._min_compact, self._snapshot_size):
            self._compact()
        elif (
            self._offset > self._flushed and self._flush_after is not None and not self._flush_timer
        ):
            # Keep rewrites of big files to about a tenth of the time.
            delay = max(self._flush_after, 10 * self._compact_seconds)
            self._flush_timer = threading.Timer(delay, self._background_flush)
            self._flush_timer.daemon = True
            self._flush_timer.start()

    def _background_flush(self) -> None:
        with self._mutex:
            self._flush_timer = None
            if self._closed or self._pid != os.getpid():
                return
            try:
                self._flush()
            except Exception:
                logger.exception("background save of %s failed", self.path)

    def _flush(self) -> None:
        """Bring the main file up to date, leaving the journal (and the holds file) as they are:
        replaying the whole journal over a newer main file gives the same state, since its lines
        carry whole records."""
        self._check_process()
        self._lock(exclusive=True)
        try:
            if self._offset <= self._flushed:
                return
            started = time.perf_counter()
            tmp = f"{self.path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                _write_synced(tmp, dump_user_dict(self._state.records).encode())
            except OSError as exc:
                _remove(tmp)
                raise StoreError(f"cannot write {tmp!r}: {exc}") from exc
            os.replace(tmp, self.path)
            self._flushed = self._offset
            self._compact_seconds = time.perf_counter() - started
        finally:
            self._unlock()

    def _compact(self) -> None:
        """Fold the journal into a new snapshot (holding the exclusive lock)."""
        started = time.perf_counter()
        self._state.prune(time.time())
        self._history.prune()
        data = dump_user_dict(self._state.records).encode()
        tag = f".{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        snapshot_tmp = str(self.path) + tag
        holds_tmp = str(self._holds_path) + tag
        journal_tmp = self._journal_path + tag
        holds = self._holds_document()
        try:
            _write_synced(snapshot_tmp, data)
            if holds is not None:
                _write_synced(holds_tmp, holds)
            fd = os.open(
                journal_tmp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644
            )
            header = _successor_header(self._journal_ino, self._offset)
            os.write(fd, header)
        except OSError as exc:
            _remove(snapshot_tmp)
            _remove(holds_tmp)
            _remove(journal_tmp)
            raise StoreError(f"cannot write {snapshot_tmp!r}: {exc}") from exc
        # The journal last: if we die between the renames, the old journal replays idempotently
        # (its lines hold whole records and holds) over the new files.
        os.replace(snapshot_tmp, self.path)
        if holds is not None:
            os.replace(holds_tmp, self._holds_path)
        else:
            _remove(str(self._holds_path))
        os.replace(journal_tmp, self._journal_path)
        _fsync_dir(self.path.parent)
        os.close(self._journal_fd)
        self._journal_fd = fd
        self._journal_ino = os.fstat(fd).st_ino
        self._offset = self._start = self._flushed = len(header)
        self._snapshot_size = len(data) + (len(holds) if holds is not None else 0)
        self._compact_seconds = time.perf_counter() - started

    def _holds_document(self) -> bytes | None:
        """The holds file's content, or None when there is nothing to keep."""
        state = self._state
        if not state.holds and not state.keys:
            return None
        holds = ",\n  ".join(hold_to_json(h) for h in state.holds.values())
        keys = ",\n  ".join(
            f"{quote(k)}: [{quote(f)}, {at!r}]" for k, (f, at) in state.keys.items()
        )
        return f'{{"holds": [\n  {holds}\n], "keys": {{\n  {keys}\n}}}}\n'.encode()

    def _remove_stale_temporaries(self) -> None:
        # Left by a process killed mid-compaction; we hold the exclusive lock, so none is live.
        # Only this store's own names: another project's file may start with this one's name.
        own = re.compile(
            re.escape(self.path.name) + r"(\.journal|\.holds)?\.[0-9]+\.[0-9a-f]{8}\.tmp"
        )
        for leftover in self.path.parent.glob(glob.escape(self.path.name) + "*.tmp"):
            if own.fullmatch(leftover.name):
                _remove(str(leftover))

    # -- the store interface -------------------------------------------------------------------
    def get(self, user: str) -> UserRecord | None:
        with self._mutex:
            self._fresh()
            return self._state.records.get(user)

    def users(self) -> list[str]:
        with self._mutex:
            self._fresh()
            return list(self._state.records)

    def records(self) -> dict[str, UserRecord]:
        with self._mutex:
            self._fresh()
            return dict(self._state.records)

    def holds(self, user: str | None = None) -> list[HoldRecord]:
        with self._mutex:
            self._fresh()
            if user is None:
                return self._state.open_holds()
            return self._state.holds_touching(user)

    def _apply(
        self, operation: Callable[..., tuple[Outcome, Changes | None]], *args: Any, **kwargs: Any
    ) -> Outcome:
        with self._mutex:
            self._check_process()
            self._lock(exclusive=True)
            try:
                outcome, changes = operation(self._state, *args, **kwargs)
                if changes is not None:
                    now = time.time()
                    self._journal(changes, now)
                    if changes.events:
                        self._history.append(changes.events)
                    self._state.apply(changes, now)
                    self._maybe_compact()
            finally:
                self._unlock()
        return outcome

    def history(
        self,
        user: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HistoryEvent]:
        with self._mutex:
            self._check_process()
            self._lock(exclusive=False)  # no change is half-written meanwhile
            try:
                return self._history.query(user, model, since, until, limit)
            finally:
                self._unlock()

    def _replace(self, records: dict[str, UserRecord]) -> None:
        with self._mutex:
            self._check_process()
            self._lock(exclusive=True)
            try:
                # One line, so that a crash leaves either the old user dict or the new one.
                parts = ['{"clear": true}', *(_record_part(u, r) for u, r in records.items())]
                self._append(('{"c": [' + ", ".join(parts) + "]}\n").encode())
                self._state.replace(records)
                self._maybe_compact()
            finally:
                self._unlock()

    def save(self) -> dict[str, Any]:
        with self._mutex:
            self._check_process()
            self._lock(exclusive=True)
            try:
                if self._offset > self._start or not self.path.exists():
                    self._compact()
            finally:
                self._unlock()
        return {"status": "success"}

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None
            if self._pid == os.getpid():
                with contextlib.suppress(StoreError):
                    self.save()
                for fd in (self._journal_fd, self._lock_fd):
                    if fd >= 0:
                        os.close(fd)
                self._history.close()
            self._closed = True
            _LIVE.discard(self)


def _record_part(user: str, record: UserRecord | None) -> str:
    if record is None:
        return f'{{"u": {quote(user)}, "del": true}}'
    return f'{{"u": {quote(user)}, "r": {to_json(record)}}}'


_HEADER_START = b'{"after": '


def _successor_header(journal_ino: int, final_size: int) -> bytes:
    """The first line of the journal a compaction starts: the journal it folded, and its size."""
    return f'{{"after": [{journal_ino}, {final_size}]}}\n'.encode()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _write_synced(path: str, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LIVE: weakref.WeakSet[JsonFileStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A lock held by a parent thread at fork time would never be released in the child.
    for store in list(_LIVE):
        store._mutex = threading.RLock()
        store._flush_timer = None  # the timer thread did not survive the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _save_all_at_exit() -> None:
    # Fold journals into their snapshots so the plain JSON file is complete (e.g. for LiteLLM).
    for store in list(_LIVE):
        try:
            if not store._closed and store._pid == os.getpid():
                store.save()
        except Exception:
            pass
