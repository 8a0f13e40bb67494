"""The hot path, ``POST /v1/projects/{project}/users/{user}/cost``, without FastAPI's routing and
dependency machinery (which costs more CPU per request than the database transaction).

It reads names as the routes do (:mod:`.paths`), validates with the same model as the documented
route and calls the same operation (:meth:`~budget_manager.operations.Operations.charge`). A request it does not accept as it stands (a bad name
or body, a project the key may not use) is handed, unchanged, to the app, which answers it the
documented way; that happens only before the store is called. Once the store has been called,
the fast lane answers itself, errors included (:func:`.errors.answer_for`), so a charge is never
run twice.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import names
from ..records import UserRecord
from .answers import outcome_body
from .auth import allowed
from .errors import answer_for
from .limits import replay
from .paths import cost_target
from .projects import Stores
from .schemas import CostIn


class CostFastLane:
    """ASGI middleware serving well-formed cost additions directly; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        stores: Stores,
        view: Callable[[UserRecord], UserRecord],
    ) -> None:
        self.app = app
        self.stores = stores
        self.view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = cost_target(scope)
        if target is None:
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        cost = self._accept(scope, target[0], target[1], body)
        if cost is None:
            await self.app(scope, replay(body, receive), send)
            return
        await self._charge(target[0], target[1], cost, scope, receive, send)

    def _accept(self, scope: Scope, project: str, user: str, body: bytes) -> CostIn | None:
        """The cost to add, or None to hand the request to the app."""
        if names.problem(project) or names.problem(user) or not allowed(scope, project):
            return None
        for name, value in scope["headers"]:
            if name == b"content-type" and value.split(b";")[0].strip().lower() != (
                b"application/json"
            ):
                return None
        try:
            return CostIn.model_validate_json(body)
        except ValidationError:
            return None

    async def _charge(
        self, project: str, user: str, cost: CostIn, scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            ops = self.stores.get(project)
            outcome = await self.stores.run(
                ops.charge, user, cost.model, cost.cost, **cost.options()
            )
            record = outcome.record
            answer = outcome_body(user, outcome, None if record is None else self.view(record))
        except Exception as exc:  # the store was called: answer here, never run it again
            await answer_for(exc)(scope, receive, send)
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


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
