"""The FastAPI app: LiteLLM's ``/get_budget`` and ``/set_budget`` plus the operations layer's
atomic operations under ``/v1/projects/{project}`` (users, costs, holds)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from .. import __version__, history, ledger, periods, records
from ..errors import CorruptStoreError, InvalidInputError, UnknownUserError
from ..events import DEFAULT_FRACTIONS, alert_fractions
from ..history import DEFAULT_RETENTION
from ..money import ZERO
from ..records import MAX_MODELS, HoldRecord, UserRecord
from ..stores.sql import IDEMPOTENCY_TTL
from . import dashboard, errors, paths
from .answers import (
    history_body,
    holds_body,
    outcome_body,
    report_body,
    user_body,
    user_dict_body,
)
from .auth import ALL_PROJECTS, ApiKeys, AuthMiddleware, allowed, key_projects
from .errors import ERROR_RESPONSES, FieldError, ForbiddenProjectError
from .fastlane import CostFastLane
from .limits import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from .projects import DEFAULT_MAX_PROJECTS, ProjectOperations, Stores
from .schemas import (
    MAX_DEPTH,
    BudgetDataOut,
    BudgetIn,
    CapabilitiesOut,
    CostIn,
    DeletedOut,
    ErrorBody,
    GetBudgetRequest,
    HealthOut,
    HistoryOut,
    HoldIn,
    HoldOut,
    HoldsOut,
    ModelName,
    Name,
    ProjectsOut,
    ReportOut,
    RolledOut,
    SetBudgetRequest,
    SettleIn,
    StatusOut,
    UserOut,
    UsersOut,
    depth,
)
from .webhooks import Webhooks, WebhookSettings

API_VERSION = 2
#: Seconds a stopping service waits for webhook deliveries still queued.
SHUTDOWN_GRACE = 5.0
OPERATIONS = [
    "get_user",
    "list_users",
    "put_budget",
    "add_cost",
    "reset",
    "roll",
    "roll_all",
    "delete_user",
    "within_budget",
    "idempotency_key",
    "holds",
    "hierarchy",
    "history",
    "projects",
]
_NAME_HELP = "percent-encoded in the path; any name without control characters"
ProjectName = Annotated[Name, Path(description=f"the project, {_NAME_HELP}")]
UserName = Annotated[Name, Path(description=f"the user, {_NAME_HELP}")]
_bearer = HTTPBearer(auto_error=False, description="an API key, when the service has keys")


def _json(body: str | bytes) -> Response:
    return Response(content=body, media_type="application/json")


def _user_json(user: str, record: UserRecord) -> Response:
    return _json(user_body(user, record))


HoldId = Annotated[Name, Path(description=f"the hold, {_NAME_HELP}")]


def create_app(
    store_url: str = "sqlite:///budgets.db",
    api_keys: ApiKeys | Iterable[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    clock: Callable[[], float] = time.time,
    *,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    max_models: int = MAX_MODELS,
    idempotency_ttl: float = IDEMPOTENCY_TTL,
    max_projects: int = DEFAULT_MAX_PROJECTS,
    history_retention: float | str = DEFAULT_RETENTION,
    alert_at: Sequence[float | str] = (),
    webhooks: Sequence[str] = (),
    webhook_secret: str | None = None,
) -> FastAPI:
    """The service over the database ``store_url``, which is opened (and its schema created)
    now: StoreError if it cannot be.

    ``api_keys``: an :class:`ApiKeys`, or key specs (``"key"`` or ``"key=projA,projB"``); None
    reads ``BUDGET_MANAGER_API_KEYS``. With no keys at all, every request is allowed.
    ``body_timeout``: seconds a request body may take to arrive (408 after). ``max_models``:
    distinct models a budget may record per period. ``idempotency_ttl``: seconds a charge's
    idempotency key is remembered. ``max_projects``: project stores kept between requests.
    ``history_retention``: how long history events are kept (seconds, or a span such as
    ``"90d"``). ``alert_at``: fractions of every budget whose crossing is announced to each URL
    of ``webhooks`` (default: 0.5, 0.8 and 1.0 when there are webhooks), signed with
    ``webhook_secret``.
    """
    if isinstance(api_keys, ApiKeys):
        keys = api_keys
    elif api_keys is None:
        keys = ApiKeys.from_env()
    else:
        keys = ApiKeys.parse(api_keys)
    watched = alert_at or (DEFAULT_FRACTIONS if webhooks else ())
    fractions = alert_fractions(watched, "alert_at") if watched else ()
    alerts = Webhooks(WebhookSettings(tuple(webhooks), webhook_secret), fractions)
    stores = Stores(
        store_url,
        clock=clock,
        watchers=(alerts.listener,) if webhooks else (),
        thresholds=fractions,
        max_projects=max_projects,
        max_models=max_models,
        idempotency_ttl=idempotency_ttl,
        history_retention=history_retention,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(alerts.wait, SHUTDOWN_GRACE)
        await stores.close()

    app = FastAPI(
        title="budget-manager service",
        version=__version__,
        description="Per-user LLM budgets: LiteLLM's hosted protocol plus atomic operations.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.stores = stores
    app.state.webhooks = alerts
    app.state.keys = keys
    errors.install(app)

    def view(record: UserRecord) -> UserRecord:
        """The record as of now: a period that has ended reads as reset."""
        return ledger.as_of(record, clock())

    def answer(user: str, outcome: ledger.Outcome) -> Response:
        record = outcome.record
        return _json(outcome_body(user, outcome, None if record is None else view(record)))

    app.add_middleware(CostFastLane, stores=stores, view=view)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes, timeout=body_timeout)
    app.add_middleware(  # nothing of the app's runs before it
        AuthMiddleware,
        keys=keys,
        open_prefixes=(dashboard.STATIC_PREFIX,),
        login_pages={dashboard.PATH: dashboard.login_page},
    )
    app.add_middleware(paths.RawPathMiddleware)  # outermost: every part routes on the raw path

    def project_store(request: Request, project: str) -> ProjectOperations:
        if not allowed(request.scope, project):
            raise ForbiddenProjectError(project)
        return stores.get(project)

    secured = APIRouter(dependencies=[Depends(_bearer)])

    @app.get("/health", response_model=HealthOut, tags=["service"])
    async def health() -> Response:
        """Whether the service and its database answer (no key needed)."""
        await stores.check()
        return _json('{"status": "ok"}')

    @secured.get("/v1/capabilities", response_model=CapabilitiesOut, tags=["service"])
    def capabilities() -> CapabilitiesOut:
        """What this service offers beyond LiteLLM's two endpoints."""
        return CapabilitiesOut(
            atomic=True,
            idempotency=True,
            version=API_VERSION,
            operations=OPERATIONS,
            max_body_bytes=max_body_bytes,
        )

    @secured.get("/v1/projects", response_model=ProjectsOut, tags=["service"])
    async def list_projects(request: Request) -> ProjectsOut:
        """The projects this key may use: those its spec names, or, for a key of every project
        (or a service without keys), every project with a budget."""
        named = key_projects(request.scope)
        if named is ALL_PROJECTS:
            return ProjectsOut(projects=await stores.projects())
        return ProjectsOut(projects=sorted(named))

    # -- LiteLLM's protocol ----------------------------------------------------------------------
    @secured.post(
        "/get_budget",
        response_model=BudgetDataOut | ErrorBody,
        tags=["litellm"],
        responses={200: {"description": '`{"status": "error"}` when the project has no budgets'}},
    )
    async def get_budget(body: GetBudgetRequest, request: Request) -> Response:
        """The project's whole user dict; ``{"status": "error"}`` when nothing is stored."""
        found = await stores.run(project_store(request, body.project_name).records)
        if not found:
            return _json(
                ErrorBody(
                    message=f"no budgets stored for project {body.project_name!r}"
                ).model_dump_json()
            )
        return _json(user_dict_body({u: view(r) for u, r in found.items()}))

    @secured.post("/set_budget", response_model=StatusOut, tags=["litellm"])
    async def set_budget(body: SetBudgetRequest, request: Request) -> StatusOut:
        """Replace the project's whole user dict, atomically, after validating every record."""
        store = project_store(request, body.project_name)
        parsed: dict[str, UserRecord] = {}
        for user, given in body.user_dict.items():
            field = f"user_dict.{user}"
            data = given.model_dump()
            if depth(data) > MAX_DEPTH:
                raise FieldError(field, f"is nested deeper than {MAX_DEPTH} levels")
            try:
                record = records.from_json(user, data)
                view(record)  # its period boundaries must be computable
            except (CorruptStoreError, InvalidInputError, OverflowError, ValueError) as exc:
                raise FieldError(field, str(exc)) from None
            if record.model_cost and len(record.model_cost) > max_models:
                raise FieldError(
                    f"{field}.model_cost",
                    f"has {len(record.model_cost)} models; a budget may record at most "
                    f"{max_models} per period",
                )
            parsed[user] = record
        await stores.run(store.replace_all, parsed)
        return StatusOut()

    # -- atomic per-user operations --------------------------------------------------------------
    users_path, user_path = paths.USERS, paths.USER

    @secured.get(users_path, response_model=UsersOut, tags=["atomic"])
    async def list_users(project: ProjectName, request: Request) -> UsersOut:
        """Users with a budget in the project."""
        return UsersOut(users=await stores.run(project_store(request, project).users))

    @secured.get(user_path, response_model=UserOut, tags=["atomic"])
    async def get_user(project: ProjectName, user: UserName, request: Request) -> Response:
        """One user's record as of now."""
        record = await stores.run(project_store(request, project).get, user)
        if record is None:
            raise UnknownUserError(user, project)
        return _user_json(user, view(record))

    @secured.put(user_path, response_model=UserOut, tags=["atomic"])
    async def put_budget(
        project: ProjectName, user: UserName, body: BudgetIn, request: Request
    ) -> Response:
        """Create or replace the user's budget (spend starts at zero); ``parent`` puts it under
        another budget of the project, whose limit its costs and holds must fit too."""
        ops = project_store(request, project)
        period = periods.parse_duration(body.duration)
        start = clock() if body.created_at is None else body.created_at
        if period is not None:
            try:
                periods.period_bounds(period, start, max(start, clock()))
            except (InvalidInputError, OverflowError, ValueError):
                raise FieldError("created_at", "puts the budget's periods out of range") from None
        record = records.new_record(body.total_budget, period, start)
        record.parent = body.parent
        record.on_unknown_model = body.on_unknown_model
        record.on_store_error = body.on_store_error
        return _user_json(user, view(await stores.run(ops.put, user, record)))

    @secured.post(f"{user_path}/cost", response_model=UserOut, tags=["atomic"])
    async def add_cost(
        project: ProjectName, user: UserName, body: CostIn, request: Request
    ) -> Response:
        """Add a cost to the user's spend (and its ancestors'), atomically; a repeated
        ``idempotency_key`` is applied once. With ``within_budget``, refused with 409 (nothing
        changed) unless it fits every budget of the chain, open holds counted."""
        ops = project_store(request, project)
        outcome = await stores.run(ops.charge, user, body.model, body.cost, **body.options())
        return answer(user, outcome)

    @secured.post(f"{user_path}/reset", response_model=UserOut, tags=["atomic"])
    async def reset(project: ProjectName, user: UserName, request: Request) -> Response:
        """Zero the user's spend and per-model breakdown."""
        return _user_json(user, view(await stores.run(project_store(request, project).reset, user)))

    @secured.post(f"{user_path}/roll", response_model=UserOut, tags=["atomic"])
    async def roll(project: ProjectName, user: UserName, request: Request) -> Response:
        """Start the user's current period (and its ancestors') if the previous one has ended."""
        record = await stores.run(project_store(request, project).roll, user)
        if record is None:
            raise UnknownUserError(user, project)
        return _user_json(user, view(record))

    @secured.delete(user_path, response_model=DeletedOut, tags=["atomic"])
    async def delete_user(project: ProjectName, user: UserName, request: Request) -> DeletedOut:
        """Remove the user's budget (refused with 409 while others name it as their parent)."""
        return DeletedOut(deleted=await stores.run(project_store(request, project).delete, user))

    @secured.post(f"{paths.PROJECT}/roll", response_model=RolledOut, tags=["atomic"])
    async def roll_all(project: ProjectName, request: Request) -> RolledOut:
        """Start the current period of every budget whose period has ended."""
        return RolledOut(rolled=await stores.run(project_store(request, project).roll_all))

    # -- holds -----------------------------------------------------------------------------------
    @secured.post(paths.HOLDS, response_model=HoldOut, tags=["holds"])
    async def take_hold(project: ProjectName, body: HoldIn, request: Request) -> Response:
        """Hold ``amount`` of the user's budget and every ancestor's for ``ttl`` seconds,
        atomically: settled spend plus open holds plus this one must fit each, or 409 and
        nothing held. A repeated ``hold_id`` answers with the hold already taken."""
        ops = project_store(request, project)
        outcome = await stores.run(
            functools.partial(
                ops.hold,
                body.user,
                body.amount,
                ttl=body.ttl,
                hold_id=body.hold_id,
                model=body.model,
            )
        )
        return answer(body.user, outcome)

    @secured.post(f"{paths.HOLD}/settle", response_model=HoldOut, tags=["holds"])
    async def settle_hold(
        project: ProjectName, hold_id: HoldId, body: SettleIn, request: Request
    ) -> Response:
        """Record the hold's actual cost, in the periods it was taken in, and free it. A second
        settle changes nothing and answers as the first; a hold that expired is still settled."""
        ops = project_store(request, project)
        taken = body.hold
        known = None
        if taken is not None:
            known = HoldRecord(
                hold_id=hold_id,
                user=taken.user,
                amount=taken.amount,
                levels=tuple((level.user, level.start) for level in taken.levels),
                expires_at=taken.expires_at,
                created_at=taken.created_at,
                model=taken.model,
            )
        outcome = await stores.run(
            ops.settle,
            hold_id,
            body.cost,
            body.model,
            known=known,
            tokens=body.tokens,
            alert_at=body.alert_at,
        )
        return answer(outcome.hold.user if outcome.hold else "", outcome)

    @secured.delete(paths.HOLD, response_model=HoldOut, tags=["holds"])
    async def release_hold(project: ProjectName, hold_id: HoldId, request: Request) -> Response:
        """Free the hold without recording a cost."""
        outcome = await stores.run(project_store(request, project).release, hold_id)
        return answer(outcome.hold.user if outcome.hold else "", outcome)

    @secured.get(paths.HOLDS, response_model=HoldsOut, tags=["holds"], dependencies=[_only("user")])
    async def list_holds(
        project: ProjectName,
        request: Request,
        user: Annotated[
            Name | None, Query(description="only the holds against this budget")
        ] = None,
    ) -> Response:
        """Open holds of the project; with ``user``, those against that user's budget (for a
        parent, the holds of the users below it too), what they hold, and what the user could
        still hold (``available``: the least any budget of its chain has left)."""
        ops = project_store(request, project)
        if user is None:
            return _json(holds_body(await stores.run(ops.holds), None, None))
        holds = await stores.run(ops.holds, user)
        held = sum((h.amount for h in holds), start=ZERO)
        return _json(holds_body(holds, str(held), str(await stores.run(ops.available, user))))

    # -- history -----------------------------------------------------------------------------
    @secured.get(
        paths.PROJECT + "/history",
        response_model=HistoryOut,
        tags=["history"],
        dependencies=[_only("user", "model", "since", "until", "limit")],
    )
    async def get_history(
        project: ProjectName,
        request: Request,
        user: Annotated[Name | None, Query(description="only this user's events")] = None,
        model: Annotated[ModelName | None, Query(description="only this model's events")] = None,
        since: Annotated[str | None, _moment_query(" (included)")] = None,
        until: Annotated[str | None, _moment_query(" (excluded)")] = None,
        limit: Annotated[
            int, Query(ge=0, le=MAX_HISTORY, description="the latest this many events")
        ] = MAX_HISTORY,
    ) -> Response:
        """The project's history: one event per change, oldest first (the latest ``limit``)."""
        now = clock()
        found = await stores.run(
            project_store(request, project).history,
            user,
            model,
            _moment(since, now, "since"),
            _moment(until, now, "until"),
            limit,
        )
        return _json(history_body(found))

    @secured.get(
        paths.PROJECT + "/report",
        response_model=ReportOut,
        tags=["history"],
        dependencies=[_only("since", "by")],
    )
    async def get_report(
        project: ProjectName,
        request: Request,
        since: Annotated[str | None, _moment_query("")] = None,
        by: Annotated[Literal["user", "model", "day"], Query()] = "user",
    ) -> Response:
        """``{key: spend}`` from the history since ``since``: by user, model or UTC day."""
        ops = project_store(request, project)
        start = _moment(since, clock(), "since")
        found = await stores.run(ops.history, None, None, start, None, None)
        return _json(report_body(by, history.totals(found, by)))

    app.include_router(secured)
    app.include_router(dashboard.router)
    return app


def _only(*allowed: str) -> Any:
    """A dependency refusing query parameters other than ``allowed`` (a misspelt filter would
    otherwise be ignored silently)."""

    def check(request: Request) -> None:
        for name in request.query_params:
            if name not in allowed:
                raise FieldError(name or "query", f"unknown query parameter {name!r}")

    return Depends(check)


MAX_HISTORY = 100_000
_MOMENT_HELP = "epoch seconds, or a span back from now such as 7d, 12h, 30m, 90s, 2w"


def _moment_query(which: str) -> Any:
    return Query(
        description=_MOMENT_HELP + which,
        pattern=r"^(-?[0-9]{1,12}(\.[0-9]{1,9})?|[0-9]{1,9}(\.[0-9]{1,9})?[smhdw])$",
    )


def _moment(text: str | None, now: float, what: str) -> float | None:
    """A ``since`` / ``until`` query parameter (as its pattern allows) as epoch seconds."""
    if text is None:
        return None
    if text[-1].isdigit():
        return float(text)
    return history.when(text, now, what)
