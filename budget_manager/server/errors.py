"""One JSON error shape (:class:`~.schemas.ErrorBody`) for every failure the service reports,
and one mapping from exceptions to those answers (:func:`answer_for`), used by the app's
exception handlers and the fast lane alike.

Answers never carry a database URL or a driver's message: those go to the service's log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import (
    BudgetExceededError,
    BudgetManagerError,
    HierarchyError,
    IdempotencyConflictError,
    InvalidInputError,
    StoreError,
    StoreUnavailableError,
    UnknownHoldError,
    UnknownUserError,
)
from .schemas import ErrorBody

logger = logging.getLogger("budget_manager.server")


class ForbiddenProjectError(Exception):
    """The request's API key may not use this project."""

    def __init__(self, project: str) -> None:
        super().__init__(f"this API key may not use project {project!r}")


class FieldError(Exception):
    """Input rejected by the service's own checks; ``field`` names what was wrong."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


#: Documented on every operation, so the OpenAPI schema covers each answer the service gives.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Unparseable request"),
        (401, "Missing or invalid API key"),
        (403, "The API key may not use this project"),
        (404, "No such user, hold or route"),
        (408, "The request headers or body did not arrive in time"),
        (
            409,
            "A budget would be exceeded (`user` names it), a key or hold id was reused, or "
            "the hierarchy does not allow the change",
        ),
        (413, "Request body too large"),
        (422, "Invalid input; `field` names it"),
        (500, "The database failed (details in the service's log)"),
        (503, "The database cannot be reached"),
    )
}


def error(
    status: int,
    message: str,
    field: str | None = None,
    user: str | None = None,
    **headers: str,
) -> JSONResponse:
    body = ErrorBody(message=message, field=field, user=user).model_dump(exclude_none=True)
    body.setdefault("field", None)
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "path", "query", "header") and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _methods(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for route in app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def answer_for(exc: BaseException) -> JSONResponse:
    """The answer to a request that raised ``exc``."""
    if isinstance(exc, FieldError):
        return error(exc.status, f"{exc.field}: {exc.message}", exc.field)
    if isinstance(exc, ForbiddenProjectError):
        return error(403, str(exc), "project")
    if isinstance(exc, UnknownUserError):
        return error(404, exc.message, "user", user=str(exc.user))
    if isinstance(exc, UnknownHoldError):
        return error(404, exc.message, "hold_id")
    if isinstance(exc, BudgetExceededError):
        return error(409, exc.message, "cost", user=exc.user)
    if isinstance(exc, IdempotencyConflictError):
        return error(409, str(exc), exc.field or "idempotency_key")
    if isinstance(exc, HierarchyError):
        return error(409, str(exc), exc.field)
    if isinstance(exc, InvalidInputError):
        return error(422, str(exc), exc.field or "body")
    if isinstance(exc, RecursionError):
        return error(422, "body is nested too deeply", "body")
    if isinstance(exc, StoreUnavailableError):
        logger.error("budget store unavailable: %s", exc)
        return error(503, "the budget store is unavailable; try again later")
    if isinstance(exc, StoreError):
        logger.error("budget store error: %s", exc)
        return error(500, "the budget store failed; the service's log has the details")
    logger.error("unexpected error", exc_info=exc)
    return error(500, "internal error; the service's log has the details")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into an :class:`ErrorBody`."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": ("body",), "msg": "invalid request"}
        field = _location(first.get("loc", ("body",)))
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if first.get("type") == "json_invalid":
            field, message = "body", "body is not valid JSON"
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        return error(422, f"{field}: {message}{more}", field)

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException) -> JSONResponse:
        field = "body" if exc.status_code == 400 else None
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # one route per method: name every method of the path
            headers["Allow"] = ", ".join(_methods(request.app, request.url.path))
        return error(exc.status_code, str(exc.detail), field, **headers)

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return answer_for(exc)

    for kind in (FieldError, ForbiddenProjectError, BudgetManagerError, RecursionError, Exception):
        app.add_exception_handler(kind, handle)
