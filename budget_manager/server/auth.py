"""API keys: who may call the service, and for which projects.

One spec names one key: ``KEY`` (every project) or ``KEY=project1,project2`` (only those; ``|``
separates projects too). Specs come from ``--api-key`` (one per option), a keys file (one per
line, ``#`` comments) or ``BUDGET_MANAGER_API_KEYS`` (one per line); each is parsed once, and
nothing ever joins specs together to split them again.
"""

from __future__ import annotations

import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from .. import names
from ..errors import InvalidInputError
from .errors import error

ENV_KEYS = "BUDGET_MANAGER_API_KEYS"
#: Paths anyone may call, keys or not.
OPEN_PATHS = frozenset({"/health"})
ALL_PROJECTS = None
SPEC_FORMAT = "KEY or KEY=project1,project2"
# Printable ASCII without space, and without the characters that separate parts of a spec.
_KEY = re.compile(r"[!-~]+")
_KEY_FORBIDDEN = frozenset("=,|")
_PROJECT_SEPARATOR = re.compile(r"[,|]")


def _masked(key: str) -> str:
    return f"{key[:4]}..." if len(key) > 8 else "..."


def parse_spec(spec: str) -> tuple[str, frozenset[str] | None]:
    """``(key, projects)`` from one spec: ``KEY`` (every project) or ``KEY=project1,project2``
    (``|`` separates projects too). InvalidInputError, naming the problem, for anything else."""
    if not isinstance(spec, str):
        raise InvalidInputError(f"an API key spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    if text.count("=") > 1:
        raise InvalidInputError(
            f"API key spec {_masked(text)} has more than one '=': neither keys nor the project "
            f"names in a spec may contain '=' (the format is {SPEC_FORMAT})"
        )
    key, sep, listed = text.partition("=")
    key = key.strip()
    if not key:
        raise InvalidInputError(f"API key spec has an empty key (the format is {SPEC_FORMAT})")
    if not _KEY.fullmatch(key) or _KEY_FORBIDDEN.intersection(key):
        raise InvalidInputError(
            f"API key {_masked(key)} must be printable ASCII without spaces, ',', '|' or '=' "
            f"(the format is {SPEC_FORMAT}; give each key its own spec)"
        )
    if not sep:
        return key, ALL_PROJECTS
    projects = []
    for part in _PROJECT_SEPARATOR.split(listed):
        project = part.strip()
        if not project:
            raise InvalidInputError(
                f"API key spec for {_masked(key)} names an empty project (the format is "
                f"{SPEC_FORMAT})"
            )
        projects.append(names.check(project, "project"))
    return key, frozenset(projects)


def specs_from_text(text: str) -> list[str]:
    """The specs in a keys file: one per line; blank lines and lines starting with ``#`` are
    skipped."""
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def specs_from_file(path: str | os.PathLike[str]) -> list[str]:
    """The specs of a keys file (see :func:`specs_from_text`); InvalidInputError naming the
    file when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as file:
            return specs_from_text(file.read())
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read API keys file {os.fspath(path)!r}: {exc}") from exc


def specs_from_env(value: str) -> list[str]:
    """The specs in ``BUDGET_MANAGER_API_KEYS``: one per line, as in a keys file. A value of
    one line without ``=`` may also list plain keys separated by commas."""
    specs = specs_from_text(value)
    if len(specs) == 1 and "=" not in specs[0]:
        return [key.strip() for key in specs[0].split(",") if key.strip()]
    return specs


@dataclass(frozen=True)
class ApiKeys:
    """Keys and the projects each may use (``None``: every project)."""

    keys: dict[str, frozenset[str] | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> ApiKeys:
        """Keys from specs (see :func:`parse_spec`), each parsed once; InvalidInputError for a
        spec that cannot be parsed or a key given twice with different projects."""
        if isinstance(specs, str):
            raise InvalidInputError("API key specs must be a list of specs, not one string")
        keys: dict[str, frozenset[str] | None] = {}
        for spec in specs:
            key, projects = parse_spec(spec)
            if key in keys and keys[key] != projects:
                raise InvalidInputError(
                    f"API key {_masked(key)} is given twice, for different projects"
                )
            keys[key] = projects
        return cls(keys)

    @classmethod
    def from_env(cls, extra: Iterable[str] = ()) -> ApiKeys:
        """Keys from ``extra`` plus ``BUDGET_MANAGER_API_KEYS`` (see :func:`specs_from_env`)."""
        return cls.parse([*extra, *specs_from_env(os.environ.get(ENV_KEYS, ""))])

    def to_json(self) -> str:
        """The keys as JSON, for passing to worker processes without re-parsing."""
        return json.dumps(
            {k: None if p is None else sorted(p) for k, p in self.keys.items()}, ensure_ascii=True
        )

    @classmethod
    def from_json(cls, text: str) -> ApiKeys:
        data = json.loads(text)
        return cls({k: None if p is None else frozenset(p) for k, p in data.items()})

    def __bool__(self) -> bool:
        return bool(self.keys)

    def lookup(self, presented: str) -> tuple[bool, frozenset[str] | None]:
        """Whether ``presented`` is a key, and the projects it may use."""
        found, projects = False, ALL_PROJECTS
        token = presented.encode()
        for key, allowed in self.keys.items():  # compare with every key: no early exit
            if hmac.compare_digest(key.encode(), token):
                found, projects = True, allowed
        return found, projects


def bearer(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text: str = bytes(value).decode("latin-1")
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class AuthMiddleware:
    """Answers 401 to any request without a valid key, before anything else runs; records the
    projects the key may use in ``scope["state"]["projects"]``.

    ``open_prefixes``: paths starting with these need no key either (files that hold no data).
    ``login_pages``: for these paths the 401 answer is the given app (a page asking a person
    for the key) instead of the JSON error."""

    def __init__(
        self,
        app: ASGIApp,
        keys: ApiKeys,
        *,
        open_prefixes: tuple[str, ...] = (),
        login_pages: Mapping[str, ASGIApp] | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.open_prefixes = open_prefixes
        self.login_pages = dict(login_pages or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in OPEN_PATHS or (self.open_prefixes and path.startswith(self.open_prefixes)):
            await self.app(scope, receive, send)
            return
        token = bearer(scope)
        found, projects = self.keys.lookup(token) if token is not None else (False, None)
        if not found and path in self.login_pages:
            await self.login_pages[path](scope, receive, send)
            return
        if not found:
            await error(
                401,
                "missing or invalid API key: send Authorization: Bearer <key>",
                "Authorization",
                **{"WWW-Authenticate": "Bearer"},
            )(scope, receive, send)
            return
        scope.setdefault("state", {})["projects"] = projects
        await self.app(scope, receive, send)


def key_projects(scope: Scope) -> frozenset[str] | None:
    """The projects the request's key may use (``ALL_PROJECTS``: every one)."""
    projects: frozenset[str] | None = scope.get("state", {}).get("projects", ALL_PROJECTS)
    return projects


def allowed(scope: Scope, project: str) -> bool:
    """Whether the request's key may use ``project``."""
    projects = key_projects(scope)
    return projects is ALL_PROJECTS or project in projects
