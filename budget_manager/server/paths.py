"""Where names sit in the service's URLs, and how they are read from them.

Routes match the path exactly as the client sent it (``scope["raw_path"]``), and each name
segment is decoded exactly once, by :func:`budget_manager.names.from_segment`. So a user or
project named ``org/user``, ``100%``, ``..``, ``a b`` or ``日本`` is one segment (sent as
``org%2Fuser``, ``100%25``, ``%2E%2E``, ...) and reaches the handlers as it was named. Both the
FastAPI routes (through the ``name`` path convertor) and the cost fast lane read names here.
"""

from __future__ import annotations

import re

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import names

PROJECT = "/v1/projects/{project:name}"
USERS = PROJECT + "/users"
USER = USERS + "/{user:name}"
HOLDS = PROJECT + "/holds"
HOLD = HOLDS + "/{hold_id:name}"
_COST = re.compile(r"^/v1/projects/([^/]*)/users/([^/]*)/cost$")


class NameConvertor(Convertor[str]):
    """A path segment holding a name, percent-encoded (an empty one too, so that it is refused
    as a name, naming the field, rather than as an unknown route)."""

    regex = "[^/]*"

    def convert(self, value: str) -> str:
        return names.from_segment(value)

    def to_string(self, value: str) -> str:
        return names.to_segment(value)


register_url_convertor("name", NameConvertor())


class RawPathMiddleware:
    """Routes on the path as sent: ``scope["path"]`` becomes the raw, still percent-encoded
    path (the server has already decoded it once, which would split ``%2F`` into two segments)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path")
            if raw is not None:
                scope["path"] = bytes(raw).decode("latin-1")
        await self.app(scope, receive, send)


def cost_target(scope: Scope) -> tuple[str, str] | None:
    """(project, user) of a ``POST .../cost`` request, or None for any other request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    match = _COST.match(scope["path"])
    if match is None:
        return None
    return names.from_segment(match.group(1)), names.from_segment(match.group(2))
