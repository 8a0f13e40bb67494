"""The ``budget-manager`` command: ``budget-manager serve`` runs the budget service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="budget-manager", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the budget service (needs the [server] extra)")
    serve.add_argument(
        "--store",
        default="sqlite:///budgets.db",
        help="database URL: sqlite:///budgets.db (default) or postgresql://user@host/db",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY[=PROJ|PROJ]",
        help="accept this bearer key (repeatable; also BUDGET_MANAGER_API_KEYS, comma-separated)",
    )
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument("--log-level", default="warning")
    return parser


def serve(args: argparse.Namespace) -> int:
    """Run the service until interrupted."""
    try:
        import uvicorn

        from .server import ApiKeys
    except ImportError:
        print("budget-manager serve needs: pip install 'budget-manager[server]'", file=sys.stderr)
        return 2
    keys = ApiKeys.from_env(args.api_key)
    if not keys:
        if args.host not in LOCAL_HOSTS:
            print(
                f"refusing to serve on {args.host} without API keys: pass --api-key or set "
                "BUDGET_MANAGER_API_KEYS (without keys only 127.0.0.1 is allowed)",
                file=sys.stderr,
            )
            return 2
        print(
            "WARNING: no API keys configured; the service is unauthenticated and bound to "
            f"{args.host} only",
            file=sys.stderr,
        )
    from .server.factory import configure
    from .stores.sql import redact_url

    configure(args.store, args.api_key, args.max_body_bytes)
    print(
        f"budget-manager: serving {redact_url(args.store)} on http://{args.host}:{args.port} "
        f"({len(keys.keys)} API key(s))",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        "budget_manager.server.factory:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        proxy_headers=False,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
