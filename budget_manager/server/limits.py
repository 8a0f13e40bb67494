"""Caps on request bodies, enforced before anything reads them: their size, and the time they
may take to arrive."""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error

DEFAULT_MAX_BODY_BYTES = 1 << 20
#: Seconds a request body may take to arrive, once its headers have.
DEFAULT_BODY_TIMEOUT = 30.0


class BodyLimitMiddleware:
    """Reads each request's body whole before the app runs: 413 when it exceeds ``max_bytes``,
    408 when it has not arrived within ``timeout`` seconds; the app never sees either."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        timeout: float = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        deadline = anyio.current_time() + self.timeout
        while more:
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                late = error(
                    408,
                    f"the request body did not arrive within {self.timeout:g} seconds",
                    "body",
                    connection="close",
                )
                await late(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = error(
            413, f"request body is larger than {self.max_bytes} bytes", "body", connection="close"
        )
        await answer(scope, receive, send)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app ``body`` (already read) first, then the real messages."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
