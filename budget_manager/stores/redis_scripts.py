"""The Redis store's Lua scripts: package resources under ``budget_manager/resources/redis``,
read once per process, each joined with the parts of ``lib.lua`` it uses (Redis scripts cannot
include one another), with the SHA-1 that EVALSHA names it by.

Only the library functions a script calls (and those they call) are placed before it: every
function defined is a closure Redis creates on every run of the script, which for the whole
library cost several microseconds per call.
"""

from __future__ import annotations

import importlib.resources
import re
import threading
from hashlib import sha1
from typing import NamedTuple

NAMES = (
    "open",
    "read",
    "put",
    "delete",
    "replace",
    "charge",
    "hold",
    "settle",
    "release",
    "reset",
    "roll",
    "history",
)
_DEFINITION = re.compile(r"^local function (\w+)\(", re.M)
_COMMENT = re.compile(r"--[^\n]*")


class Script(NamedTuple):
    """A script's full source and its SHA-1."""

    source: str
    sha: str


def assemble(lib: str, body: str) -> str:
    """``body`` after the library's preamble and the functions it needs, in library order.

    The library is its preamble (everything before the first ``local function``), then one part
    per function: the comment lines just above its definition, the definition, and what follows
    up to the next part.
    """
    starts = []
    for match in _DEFINITION.finditer(lib):
        start = match.start()
        while True:  # take the comment block just above the definition along
            previous = lib.rfind("\n", 0, start - 1) + 1
            if start == 0 or not lib[previous:start].startswith("--"):
                break
            start = previous
        starts.append((start, match.group(1)))
    if not starts:
        return lib + body
    preamble = lib[: starts[0][0]]
    parts = {
        name: lib[start : starts[i + 1][0] if i + 1 < len(starts) else len(lib)]
        for i, (start, name) in enumerate(starts)
    }
    needed: set[str] = set()
    todo = [body]
    while todo:
        text = _COMMENT.sub("", todo.pop())
        for name, part in parts.items():
            if name not in needed and re.search(rf"\b{name}\b", text):
                needed.add(name)
                todo.append(part)
    return preamble + "".join(part for name, part in parts.items() if name in needed) + body


_scripts: dict[str, Script] = {}
_lock = threading.Lock()


def scripts() -> dict[str, Script]:
    """Every script, read from the package's resources once per process."""
    if not _scripts:
        with _lock:
            if not _scripts:
                folder = importlib.resources.files("budget_manager") / "resources" / "redis"
                lib = (folder / "lib.lua").read_text(encoding="utf-8")
                for name in NAMES:
                    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
                    source = assemble(lib, body)
                    _scripts[name] = Script(source, sha1(source.encode()).hexdigest())
    return _scripts
