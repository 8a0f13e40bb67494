"""The dashboard at ``/dashboard``: one page that draws a project's budgets, spend over time,
spend per model and open holds in the browser, from the service's own endpoints.

Keys, when the service has any: ``GET /dashboard`` with ``Authorization: Bearer KEY`` answers
the page (200). Without a valid key it answers a small login page (401) that asks for the key,
checks it by requesting the page with it, keeps it in ``sessionStorage`` (never in the URL) and
puts the page it got in its place; the page's data requests carry the key as a header. The
files under ``/dashboard/static/`` (scripts, styles, the vendored charting library) hold no data
and are served without a key, so that the login page can load them. Nothing is fetched from
another origin: the pages' Content-Security-Policy allows only this one.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from .errors import error

PATH = "/dashboard"
STATIC_PREFIX = PATH + "/static/"
#: The files the pages load, and their media types; nothing else is served.
STATIC_FILES = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "login.js": "text/javascript; charset=utf-8",
    "frappe-charts.min.umd.js": "text/javascript; charset=utf-8",
}
# frappe-charts adds its own <style> element and inline style attributes, hence 'unsafe-inline'
# for styles; scripts come only from this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_HTML = "text/html; charset=utf-8"


@functools.cache
def asset(name: str) -> bytes:
    """The bytes of one of the dashboard's files, as shipped in the package."""
    folder = resources.files("budget_manager").joinpath("resources").joinpath("dashboard")
    return folder.joinpath(name).read_bytes()


@functools.cache
def _etag(name: str) -> str:
    return '"' + hashlib.sha256(asset(name)).hexdigest()[:32] + '"'


def page() -> Response:
    """The dashboard page (200)."""
    return Response(asset("dashboard.html"), media_type=_HTML, headers=_PAGE_HEADERS)


def login() -> Response:
    """The login page: 401, asking a person for the key."""
    return Response(
        asset("login.html"),
        status_code=401,
        media_type=_HTML,
        headers={**_PAGE_HEADERS, "WWW-Authenticate": "Bearer"},
    )


async def login_page(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI app answering :func:`login` (what the key check answers for ``/dashboard``)."""
    await login()(scope, receive, send)


router = APIRouter(include_in_schema=False)


@router.get(PATH)
async def dashboard() -> Response:
    return page()


@router.get(STATIC_PREFIX + "{name}")
async def static(name: str, request: Request) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return error(404, f"no dashboard file named {name!r}", "path")
    headers = {
        "Cache-Control": "no-cache",
        "ETag": _etag(name),
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(asset(name), media_type=media_type, headers=headers)
