"""The app as uvicorn's worker processes build it, from settings the CLI puts in the environment."""

from __future__ import annotations

import os
from collections.abc import Sequence

from fastapi import FastAPI

from .app import create_app
from .auth import ENV_KEYS

ENV_STORE = "BUDGET_MANAGER_STORE"
ENV_MAX_BODY = "BUDGET_MANAGER_MAX_BODY_BYTES"


def configure(store_url: str, api_keys: Sequence[str], max_body_bytes: int) -> None:
    """Pass the CLI's settings to ``app_from_env`` (which may run in other processes)."""
    os.environ[ENV_STORE] = store_url
    specs = [*api_keys, *os.environ.get(ENV_KEYS, "").split(",")]
    os.environ[ENV_KEYS] = ",".join(s for s in specs if s.strip())
    os.environ[ENV_MAX_BODY] = str(max_body_bytes)


def app_from_env() -> FastAPI:
    """``create_app`` with the settings ``configure`` stored."""
    return create_app(
        store_url=os.environ.get(ENV_STORE, "sqlite:///budgets.db"),
        api_keys=None,
        max_body_bytes=int(os.environ.get(ENV_MAX_BODY, str(1 << 20))),
    )
