"""Run the budget service. Every option shows its default."""

# ``serve`` opens the store and binds the port before it announces anything; when it cannot
# start it says why on one line of stderr and exits with 1 (2 for a usage error).

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from ..base import STARTUP_ERROR, USAGE_ERROR

#: serve has its own --store and --api-key (it is the service): no common options.
COMMON_OPTIONS = False
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Where the webhook secret may come from instead of the command line (the process list).
ENV_WEBHOOK_SECRET = "BUDGET_MANAGER_WEBHOOK_SECRET"


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _fractions(text: str) -> list[str]:
    from ...errors import InvalidInputError
    from ...events import alert_fractions

    try:
        return [str(f) for f in alert_fractions(text.split(","), "--alert-at")]
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _webhook(text: str) -> str:
    from ...errors import InvalidInputError
    from ...server.webhooks import WebhookSettings

    try:
        WebhookSettings((text,))
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _span(text: str) -> float:
    from ...errors import InvalidInputError
    from ...history import span

    try:
        return span(text, "--history-retention")
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(serve: argparse.ArgumentParser) -> None:
    """The options of ``serve`` (its own ``--store`` and ``--api-key``: it is the service)."""
    from ...names import MAX_MODEL_NAME
    from ...records import MAX_MODELS

    option = serve.add_argument
    option(
        "--store",
        default="sqlite:///budgets.db",
        help="database URL: sqlite:///path.db or postgresql://user@host:5432/db "
        "(default: %(default)s)",
    )
    option("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    option("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    option(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY[=PROJECT,...]",
        help="accept this bearer key, for every project or only those listed; repeatable "
        "(default: none; keys also come from --api-keys-file and BUDGET_MANAGER_API_KEYS, one "
        "spec per line)",
    )
    option(
        "--api-keys-file",
        metavar="PATH",
        help="read key specs from this file, one per line, # starts a comment line (default: none)",
    )
    option(
        "--max-body-bytes",
        type=_count,
        default=1 << 20,
        help="larger request bodies get 413 (default: %(default)s)",
    )
    option(
        "--header-timeout",
        type=_seconds,
        default=10.0,
        help="seconds a client may take to send a request's headers; the connection is then "
        "closed with 408 (default: %(default)s)",
    )
    option(
        "--body-timeout",
        type=_seconds,
        default=30.0,
        help="seconds a request body may take to arrive; 408 after (default: %(default)s)",
    )
    option(
        "--keep-alive-timeout",
        type=_count,
        default=5,
        help="seconds an idle kept-alive connection stays open (default: %(default)s)",
    )
    option(
        "--max-connections",
        type=int,
        default=1000,
        help="connections open at once; one more is answered 503 and closed; 0 for no limit "
        "(default: %(default)s)",
    )
    option(
        "--max-models",
        type=_count,
        default=MAX_MODELS,
        help="distinct models a budget may record in one period; further models get 422 "
        f"(default: %(default)s; model names are at most {MAX_MODEL_NAME} characters)",
    )
    option(
        "--idempotency-ttl",
        type=_seconds,
        default=86_400.0,
        metavar="SECONDS",
        help="how long a charge's idempotency key is remembered (default: %(default)s, 24 h)",
    )
    option(
        "--max-projects",
        type=_count,
        default=1024,
        help="project stores kept open between requests, least recently used dropped first "
        "(default: %(default)s)",
    )
    option(
        "--history-retention",
        type=_span,
        default="90d",
        metavar="SPAN",
        help="how long the spend history is kept: seconds or a span such as 30d, 12h "
        "(default: %(default)s)",
    )
    option(
        "--webhook",
        action="append",
        type=_webhook,
        default=[],
        metavar="URL",
        help="POST each threshold alert to this URL as JSON; repeatable (default: none)",
    )
    option(
        "--webhook-secret",
        metavar="SECRET",
        help="sign each alert's body with HMAC-SHA256 of this secret, in hex, in the "
        f"X-Budget-Manager-Signature header (default: ${ENV_WEBHOOK_SECRET}, else unsigned)",
    )
    option(
        "--alert-at",
        type=_fractions,
        metavar="FRACTIONS",
        help="fractions of every budget whose crossing alerts, comma-separated "
        "(default: 0.5,0.8,1.0 with a --webhook, else none)",
    )
    option("--workers", type=_count, default=1, help="uvicorn processes (default: %(default)s)")
    option(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="(default: %(default)s)",
    )


def _fail(message: str, code: int = STARTUP_ERROR) -> int:
    print(f"budget-manager: {message}", file=sys.stderr, flush=True)
    return code


def run(args: argparse.Namespace, out: object = None) -> int:
    """Run the service until interrupted; the exit code."""
    try:
        from ...server.app import create_app
        from ...server.auth import ENV_KEYS, ApiKeys, specs_from_env, specs_from_file
        from ...server.factory import configure
        from ...server.serving import StartupError, bind, run
    except ImportError as exc:
        return _fail(
            f"serve needs the [server] extra ({exc.name or exc} is missing): "
            "pip install 'budget-manager[server]'"
        )
    import os

    from ...errors import BudgetManagerError, InvalidInputError
    from ...stores.sql import redact_url

    store = redact_url(args.store)
    try:
        specs = list(args.api_key)
        if args.api_keys_file:
            specs += specs_from_file(args.api_keys_file)
        keys = ApiKeys.parse([*specs, *specs_from_env(os.environ.get(ENV_KEYS, ""))])
    except InvalidInputError as exc:
        return _fail(str(exc), USAGE_ERROR)
    if not keys and args.host not in LOCAL_HOSTS:
        return _fail(
            f"refusing to serve on {args.host} without API keys: pass --api-key, "
            f"--api-keys-file or set {ENV_KEYS} (without keys only 127.0.0.1 is allowed)",
            USAGE_ERROR,
        )
    options = {
        "max_body_bytes": args.max_body_bytes,
        "body_timeout": args.body_timeout,
        "max_models": args.max_models,
        "idempotency_ttl": args.idempotency_ttl,
        "max_projects": args.max_projects,
        "history_retention": args.history_retention,
        "alert_at": args.alert_at or [],
        "webhooks": args.webhook,
        "webhook_secret": args.webhook_secret or os.environ.get(ENV_WEBHOOK_SECRET) or None,
    }
    try:
        app = create_app(store_url=args.store, api_keys=keys, **options)  # opens the store
    except BudgetManagerError as exc:
        text = " ".join(str(exc).split())
        return _fail(text if store in text else f"cannot open the store {store}: {text}")
    try:
        sock = bind(args.host, args.port)
    except StartupError as exc:
        asyncio.run(app.state.stores.close())
        return _fail(str(exc))
    if not keys:
        print(
            "budget-manager: WARNING: no API keys configured; the service is unauthenticated "
            f"and bound to {args.host} only",
            file=sys.stderr,
        )
    target: object = app
    if args.workers > 1:  # each worker opens the store itself, from the parsed settings
        asyncio.run(app.state.stores.close())
        configure(args.store, keys, **options)
        target = "budget_manager.server.factory:app_from_env"
    port = sock.getsockname()[1]

    def announce() -> None:
        print(
            f"budget-manager: serving {store} on http://{args.host}:{port} "
            f"({len(keys.keys)} API key(s))",
            file=sys.stderr,
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        run(
            target,
            sock,
            workers=args.workers,
            announce=announce,
            header_timeout=args.header_timeout,
            keep_alive_timeout=args.keep_alive_timeout,
            max_connections=args.max_connections or None,
            log_level=args.log_level,
        )
    return 0
