"""HTTP calls to a budget service: keep-alive sessions, a timeout on every request, and bounded
retries with exponential backoff (only for requests that are safe to repeat)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Generator
from typing import Any

import requests

from ..errors import InvalidInputError, StoreUnavailableError

DEFAULT_TIMEOUT = (3.05, 10.0)
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.1
MAX_BACKOFF = 2.0
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ServiceUnavailableError(StoreUnavailableError):
    """The budget service could not be reached, or kept failing; ``reason`` says how."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class HttpClient:
    """Requests to one ``api_base`` with fixed headers."""

    def __init__(
        self,
        api_base: str,
        headers: dict[str, str] | None = None,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        try:  # the base as requests writes it (host encoding); paths are appended as built
            self._base = requests.Request("GET", self.api_base).prepare().url.rstrip("/")  # type: ignore[union-attr]
        except requests.RequestException as exc:
            raise InvalidInputError(
                f"api_base {api_base!r} is not a usable URL: {exc}", field="api_base"
            ) from None
        self.headers = dict(headers or {})
        if not any(k.lower() == "content-type" for k in self.headers):
            self.headers["Content-Type"] = "application/json"
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None or getattr(self._local, "pid", None) != os.getpid():
            session = requests.Session()
            self._local.session = session
            self._local.pid = os.getpid()
        return session

    def request(
        self,
        method: str,
        path: str,
        body: str | None = None,
        *,
        retry: bool = True,
        any_status: bool = False,
    ) -> requests.Response:
        """The service's answer: any status below 500 (with ``any_status``, any status at all,
        retrying only when no answer came). ``path`` is sent exactly as given (its names
        percent-encoded by the caller), dot segments and all.

        ServiceUnavailableError, naming the URL, when it cannot be reached or keeps failing.
        """
        url = self._base + path
        plan = attempts(self, url, retry, any_status)
        step = next(plan)
        try:
            while True:
                if step is None:
                    try:
                        answer: Any = self._send(method, url, body)
                    except requests.RequestException as exc:
                        self._local.session = None  # drop a connection that may be broken
                        answer = exc
                    step = plan.send(answer)
                else:
                    time.sleep(step)
                    step = plan.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _send(self, method: str, url: str, body: str | None) -> requests.Response:
        session = self._session()
        data = body.encode() if body is not None else None
        prepared = session.prepare_request(
            requests.Request(method, url, data=data, headers=self.headers)
        )
        prepared.url = url  # requests would decode %2E back into dots, which servers navigate
        settings = session.merge_environment_settings(url, {}, None, None, None)
        return session.send(prepared, timeout=self.timeout, **settings)

    def close(self) -> None:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None


#: What :func:`attempts` asks of its driver: None to send the request (and be sent the response,
#: or the transport's exception), or a delay to sleep for.
Step = float | None


def attempts(
    client: HttpClient | AsyncHttpClient, url: str, retry: bool, any_status: bool
) -> Generator[Step, Any, Any]:
    """The retry policy of one request, for the sync and the asyncio client alike: the response
    to return, or ServiceUnavailableError."""
    count = 1 + (client.retries if retry else 0)
    problem = ""
    for attempt in range(count):
        if attempt:
            delay = min(MAX_BACKOFF, client.backoff * (2 ** (attempt - 1)))
            yield delay * (0.5 + random.random() / 2)
        answer = yield None
        if isinstance(answer, Exception):
            problem = f"{type(answer).__name__}: {answer}"
            continue
        if any_status:
            return answer
        if answer.status_code in _RETRY_STATUSES and attempt + 1 < count:
            problem = f"HTTP {answer.status_code}"
            continue
        if answer.status_code >= 500:
            problem = f"HTTP {answer.status_code}: {answer.text[:200]}"
            break
        return answer
    raise ServiceUnavailableError(
        f"budget service at {url} is unavailable after {count} attempt(s): {problem}",
        f"{problem} after {count} attempt(s)",
    )


class AsyncHttpClient:
    """:class:`HttpClient` for asyncio, over httpx (the ``[async]`` extra): one connection pool,
    the same timeouts and retry policy."""

    def __init__(
        self,
        api_base: str,
        headers: dict[str, str] | None = None,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        sync = HttpClient(api_base, headers, timeout=timeout, retries=retries, backoff=backoff)
        self.api_base, self._base, self.headers = sync.api_base, sync._base, sync.headers
        self.timeout, self.retries, self.backoff = timeout, sync.retries, sync.backoff
        try:
            import httpx
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise StoreUnavailableError(
                "the asyncio client of a budget service needs httpx: "
                "pip install 'budget-manager[async]'"
            ) from None
        self._httpx = httpx
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._client = httpx.AsyncClient(
            headers=self.headers, timeout=httpx.Timeout(read, connect=connect)
        )

    async def request(
        self,
        method: str,
        path: str,
        body: str | None = None,
        *,
        retry: bool = True,
        any_status: bool = False,
    ) -> Any:
        """As :meth:`HttpClient.request`, awaited; the response is httpx's."""
        import asyncio  # here: the sync client's users need not load it

        url = self._base + path
        plan = attempts(self, url, retry, any_status)
        step = next(plan)
        try:
            while True:
                if step is None:
                    try:
                        answer: Any = await self._client.request(
                            method, self._httpx.URL(url), content=body
                        )
                    except self._httpx.HTTPError as exc:
                        answer = exc
                    step = plan.send(answer)
                else:
                    await asyncio.sleep(step)
                    step = plan.send(None)
        except StopIteration as done:
            return done.value

    async def close(self) -> None:
        await self._client.aclose()


def json_of(response: Any) -> Any:
    """The body as JSON with exact decimals, or None if it is not JSON."""
    from ..records import loads

    try:
        return loads(response.content)
    except ValueError:
        return None
