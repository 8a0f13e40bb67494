"""The hot path, ``POST /v1/projects/{project}/users/{user}/cost``, without FastAPI's routing and
dependency machinery (which costs more CPU per request than the database transaction).

It validates with the same model as the documented route and calls the same store operation.
Anything it does not accept as it stands (another route, a bad body, a project the key may not
use, an error from the store) is handed, unchanged and with nothing written, to the app, which
answers it the documented way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from json import dumps

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import BudgetManagerError
from ..records import UserRecord, to_json
from .auth import allowed
from .limits import replay
from .projects import Stores
from .schemas import MAX_NAME, CostIn

_COST_PATH = re.compile(r"^/v1/projects/([^/]+)/users/([^/]+)/cost$")


class CostFastLane:
    """ASGI middleware serving well-formed cost additions directly; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        stores: Stores,
        clock: Callable[[], float],
        view: Callable[[UserRecord], UserRecord],
    ) -> None:
        self.app = app
        self.stores = stores
        self.clock = clock
        self.view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            _COST_PATH.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        answer = await self._serve(scope, match.group(1), match.group(2), body)
        if answer is None:
            await self.app(scope, replay(body, receive), send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def _serve(self, scope: Scope, project: str, user: str, body: bytes) -> bytes | None:
        """The answer, or None to hand the request to the app."""
        if len(project) > MAX_NAME or len(user) > MAX_NAME or not allowed(scope, project):
            return None
        for name, value in scope["headers"]:
            if name == b"content-type" and value.split(b";")[0].strip().lower() != (
                b"application/json"
            ):
                return None
        try:
            cost = CostIn.model_validate_json(body)
        except ValidationError:
            return None
        try:
            store = self.stores.get(project)
            record = await self.stores.run(
                functools.partial(
                    store.charge,
                    user,
                    cost.model,
                    cost.cost,
                    self.clock(),
                    within_budget=cost.within_budget,
                    idempotency_key=cost.idempotency_key,
                )
            )
        except BudgetManagerError:  # nothing was written: the app reports it
            return None
        text = (
            f'{{"status": "success", "user": {dumps(user)}, "data": {to_json(self.view(record))}}}'
        )
        return text.encode()


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
