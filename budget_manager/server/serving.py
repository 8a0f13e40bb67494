"""Running the service under uvicorn: the listening socket bound before anything is announced,
a deadline for each request's headers, idle keep-alive connections closed, and a cap on
concurrent connections.

uvicorn itself bounds neither how long a client may take to send its request headers nor (for
a connection that has sent nothing yet) how long it may stay silent; the protocols here close
such connections, with a 408 answer, ``header_timeout`` seconds after the connection opened or
the request's first byte arrived. They also answer 503 and close at once a connection that
would be one more than ``max_connections``. Request bodies have their own deadline
(:class:`~.limits.BodyLimitMiddleware`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors.multiprocess import Multiprocess

#: Seconds a client may take to send a request's headers (from connecting, or from the request's
#: first byte on a kept-alive connection).
DEFAULT_HEADER_TIMEOUT = 10.0
#: Seconds an idle kept-alive connection stays open.
DEFAULT_KEEP_ALIVE_TIMEOUT = 5
#: Concurrent connections; one more is answered 503 and closed.
DEFAULT_MAX_CONNECTIONS = 1000
_BACKLOG = 2048


class StartupError(Exception):
    """The service cannot start; the message says why, on one line."""


class _Guarded(asyncio.Protocol):
    """Closes a connection, answering 408, whose request headers are not complete within
    ``config.header_timeout`` seconds of the connection opening or of the request's first byte;
    answers 503 to, and closes, a connection beyond ``config.max_connections``."""

    config: Any
    connections: Any
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: Any
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        limit = getattr(self.config, "max_connections", None)
        if limit and len(self.connections) > limit:
            self._refuse(
                "503 Service Unavailable",
                f"the service has {limit} connections open already; try again shortly",
                "connections",
            )
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of a new request on a kept-alive connection
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # a request's headers are complete
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        timeout = getattr(self.config, "header_timeout", None)
        if timeout:
            self._header_timer = self.loop.call_later(timeout, self._headers_late, timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self, timeout: float) -> None:
        self._header_timer = None
        self._refuse(
            "408 Request Timeout",
            f"the request headers did not arrive within {timeout:g} seconds",
            "headers",
        )

    def _refuse(self, status: str, message: str, field: str) -> None:
        """Answer an error (the service's JSON shape) and close the connection."""
        if self.transport.is_closing():
            return
        body = json.dumps({"status": "error", "message": message, "field": field}).encode()
        head = (
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\nretry-after: 1\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.transport.close()


class H11Guarded(_Guarded, H11Protocol):
    """uvicorn's h11 protocol with the header deadline and the connection cap."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is part of uvicorn[standard]
    PROTOCOL: type[asyncio.Protocol] = H11Guarded
else:

    class HttpToolsGuarded(_Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header deadline and the connection cap."""

    PROTOCOL = HttpToolsGuarded


class ServiceConfig(uvicorn.Config):
    """uvicorn's settings for the service: its protocol (``protocol``, with the header deadline
    and the connection cap; ``max_connections`` None for no cap), and the keep-alive timeout."""

    def __init__(
        self,
        app: Any,
        *,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        keep_alive_timeout: int = DEFAULT_KEEP_ALIVE_TIMEOUT,
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
        protocol: type[asyncio.Protocol] = PROTOCOL,
        **options: Any,
    ) -> None:
        options.setdefault("log_level", "warning")
        super().__init__(
            app,
            http=protocol,
            timeout_keep_alive=keep_alive_timeout,
            access_log=False,
            proxy_headers=False,
            **options,
        )
        self.header_timeout = header_timeout
        self.max_connections = max_connections


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls ``announce`` once it is listening."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.announce()


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``; StartupError naming the address when there is none."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise StartupError(f"cannot listen on {where}: {_reason(exc)}") from None
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {where}: {_reason(exc)}") from None
    sock.set_inheritable(True)
    return sock


def run(
    app: Any,
    sock: socket.socket,
    *,
    workers: int = 1,
    announce: Callable[[], None] = lambda: None,
    **settings: Any,
) -> None:
    """Serve ``app`` (an ASGI app, or for several workers the import string of an app factory)
    on the listening ``sock`` until interrupted; ``settings`` go to :class:`ServiceConfig`."""
    if workers <= 1:
        config = ServiceConfig(app, **settings)
        AnnouncingServer(config, announce).run(sockets=[sock])
        return
    config = ServiceConfig(app, factory=True, workers=workers, **settings)
    if "target" in inspect.signature(Multiprocess.__init__).parameters:  # uvicorn < 0.50
        supervisor = Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock])  # type: ignore[call-arg]
    else:
        supervisor = Multiprocess(config, sockets=[sock])
    announce()  # the socket listens already: requests wait for the workers
    supervisor.run()


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)[:1].lower() + str(text)[1:]
