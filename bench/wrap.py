"""Benchmark: what wrap() adds to one SDK call, against the same call on the bare client.

    .venv/bin/python bench/wrap.py                      # memory and sqlite stores
    .venv/bin/python bench/wrap.py --stores memory,sqlite,redis --batches 15 --calls 40

The provider is the local stub server (examples/openai_stub.py) in its own process, so the two
clients meet the same server. Batches of ``--calls`` calls alternate between the bare client and
the wrapped one (per endpoint and store); per-call time = batch time / calls. The figure is the
median wrapped per-call time minus the median bare one, in microseconds: the hold (worst case
counted and priced, reserved in the store), the settle (usage priced, written to the store) and the
proxy. The stub's own time is in both and cancels out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("BUDGET_MANAGER_OFFLINE", "1")
MESSAGES = [{"role": "user", "content": "Hey, how's it going?"}]


@contextlib.contextmanager
def stub_server() -> Iterator[str]:
    """The stub in a child process; its base URL."""
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "openai_stub.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        child.terminate()
        child.wait()


def store_url(kind: str, folder: str) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{folder}/bench.db"
    if kind == "redis":
        return f"redis://127.0.0.1:6379/0?prefix=bench-wrap-{uuid.uuid4().hex[:8]}"
    if kind == "json":
        return f"json://{folder}/bench.json"
    raise SystemExit(f"unknown store {kind!r}")


def calls(url: str) -> dict[str, Callable[[Any], Any]]:
    import anthropic
    import openai

    def chat(client: Any) -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)

    def chat_stream(client: Any) -> Any:
        return list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                max_tokens=50,
                stream=True,
                stream_options={"include_usage": True},
            )
        )

    def messages(client: Any) -> Any:
        return client.messages.create(model="claude-haiku-4-5", messages=MESSAGES, max_tokens=50)

    del openai, anthropic
    return {
        "chat.completions.create": chat,
        "stream=True": chat_stream,
        "messages.create": messages,
    }


def per_call(function: Callable[[Any], Any], client: Any, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        function(client)
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--batches", type=int, default=11)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()

    import anthropic
    import openai

    from budget_manager import BudgetManager, wrap

    print(
        f"# wrap() overhead, median of {args.batches} batches x {args.calls} calls; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, openai {openai.__version__}, "
        f"anthropic {anthropic.__version__}"
    )
    print(f"{'store':8} {'call':26} {'bare µs':>9} {'wrapped µs':>11} {'added µs':>9}")
    with stub_server() as url, tempfile.TemporaryDirectory() as folder:
        bare_openai = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        bare_anthropic = anthropic.Anthropic(
            base_url=url.removesuffix("/v1"), api_key="k", max_retries=0
        )
        for kind in args.stores.split(","):
            bm = BudgetManager("bench-wrap", store=store_url(kind, folder))
            bm.create_budget(total_budget=1_000_000, user="ann")
            wrapped = {
                "openai": wrap(bare_openai, bm, user="ann"),
                "anthropic": wrap(bare_anthropic, bm, user="ann"),
            }
            for name, function in calls(url).items():
                provider = "anthropic" if name.startswith("messages") else "openai"
                bare = bare_anthropic if provider == "anthropic" else bare_openai
                per_call(function, bare, 5)  # warm up both
                per_call(function, wrapped[provider], 5)
                plain, budgeted = [], []
                for _ in range(args.batches):
                    plain.append(per_call(function, bare, args.calls))
                    budgeted.append(per_call(function, wrapped[provider], args.calls))
                a, b = statistics.median(plain) * 1e6, statistics.median(budgeted) * 1e6
                print(f"{kind:8} {name:26} {a:9.0f} {b:11.0f} {b - a:9.0f}", flush=True)
            bm.close()


if __name__ == "__main__":
    main()
