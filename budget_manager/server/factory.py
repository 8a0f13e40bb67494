"""The app as uvicorn's worker processes build it, from the settings the CLI parsed.

The settings travel as JSON in a private environment variable, keys included, so nothing is
joined into a string and split again on the way.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI

from .app import create_app
from .auth import ApiKeys

ENV_SETTINGS = "_BUDGET_MANAGER_SERVICE"


def configure(store_url: str, api_keys: ApiKeys, **options: Any) -> None:
    """Keep ``create_app``'s arguments for ``app_from_env`` (which may run in other processes)."""
    settings = {"store_url": store_url, "api_keys": api_keys.to_json(), **options}
    os.environ[ENV_SETTINGS] = json.dumps(settings)


def app_from_env() -> FastAPI:
    """``create_app`` with the settings ``configure`` kept (its defaults without any)."""
    text = os.environ.get(ENV_SETTINGS)
    if not text:
        return create_app()
    settings = json.loads(text)
    keys = ApiKeys.from_json(settings.pop("api_keys"))
    return create_app(api_keys=keys, **settings)
