"""Shared fixtures. No test reaches beyond loopback: tiktoken's encodings come from the copies
the package ships (downloads are off, the tiktoken cache is a fresh empty folder), and chat
endpoints are real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Set before budget_manager loads any encoding: every run proves the offline path works.
os.environ["BUDGET_MANAGER_OFFLINE"] = "1"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # else litellm fetches prices at import
os.environ["TIKTOKEN_CACHE_DIR"] = tempfile.mkdtemp(prefix="bm-tiktoken-")
os.environ["BUDGET_MANAGER_OUTBOX_DIR"] = tempfile.mkdtemp(prefix="bm-outbox-")
os.environ.pop("BUDGET_MANAGER_API_BASE", None)
os.environ.pop("BUDGET_MANAGER_API_KEYS", None)
for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
    os.environ.pop(name, None)

sys.path.insert(0, str(EXAMPLES))
from openai_stub import StubServer, start_in_thread  # noqa: E402

import budget_manager  # noqa: E402


def utc(text: str) -> float:
    """Epoch seconds of an ISO date-time read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


class FakeClock:
    """A settable clock for BudgetManager(clock=...)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def set(self, text: str) -> None:
        self.now = utc(text)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc("2024-01-31T09:00:00"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in its own folder with the global cap reset."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(budget_manager, "max_budget", None)
    monkeypatch.setattr(budget_manager, "_current_cost", 0.0)
    monkeypatch.setattr(budget_manager, "strict", False)
    yield


@pytest.fixture(scope="session")
def stub() -> Iterator[StubServer]:
    server = start_in_thread()
    yield server
    server.shutdown()


@pytest.fixture
def stub_url(stub: StubServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
    return stub.url
