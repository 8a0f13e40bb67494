"""API keys: who may call the service, and for which projects."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import InvalidInputError
from .errors import error

ENV_KEYS = "BUDGET_MANAGER_API_KEYS"
#: Paths anyone may call, keys or not.
OPEN_PATHS = frozenset({"/health"})
ALL_PROJECTS = None


@dataclass(frozen=True)
class ApiKeys:
    """Keys and the projects each may use (``None``: every project)."""

    keys: dict[str, frozenset[str] | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> ApiKeys:
        """Keys from ``key`` or ``key=projA|projB`` strings (the latter limited to those projects)."""
        keys: dict[str, frozenset[str] | None] = {}
        for spec in specs:
            spec = spec.strip()
            if not spec:
                continue
            key, sep, projects = spec.partition("=")
            key = key.strip()
            if not key:
                raise InvalidInputError(f"API key spec {spec!r} has an empty key")
            if sep:
                names = frozenset(p.strip() for p in projects.split("|") if p.strip())
                if not names:
                    raise InvalidInputError(f"API key spec for {key[:4]}... names no project")
                keys[key] = names
            else:
                keys[key] = ALL_PROJECTS
        return cls(keys)

    @classmethod
    def from_env(cls, extra: Iterable[str] = ()) -> ApiKeys:
        """Keys from ``extra`` plus the comma-separated ``BUDGET_MANAGER_API_KEYS``."""
        specs = list(extra) + os.environ.get(ENV_KEYS, "").split(",")
        return cls.parse(specs)

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
    projects the key may use in ``scope["state"]["projects"]``."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        if scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = bearer(scope)
        found, projects = self.keys.lookup(token) if token is not None else (False, None)
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


def allowed(scope: Scope, project: str) -> bool:
    """Whether the request's key may use ``project``."""
    projects = scope.get("state", {}).get("projects", ALL_PROJECTS)
    return projects is ALL_PROJECTS or project in projects
