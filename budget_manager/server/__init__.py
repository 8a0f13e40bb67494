"""The budget service: LiteLLM's two-endpoint protocol plus atomic per-user operations over a
SQL store, as a FastAPI app (the ``[server]`` extra). Run it with ``budget-manager serve``."""

from .app import create_app
from .auth import ApiKeys

__all__ = ["ApiKeys", "create_app"]
