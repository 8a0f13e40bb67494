"""Point the examples at a chat endpoint: OPENAI_BASE_URL if set, else a loopback stub server."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def ensure_endpoint() -> str:
    if not os.environ.get("OPENAI_BASE_URL"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from openai_stub import start_in_thread

        os.environ["OPENAI_BASE_URL"] = start_in_thread().url
        print(
            f"(no OPENAI_BASE_URL set: using a local test server at {os.environ['OPENAI_BASE_URL']})"
        )
    return os.environ["OPENAI_BASE_URL"]
