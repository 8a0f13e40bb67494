"""Benchmark: what keeping the spend history adds to ``update_cost`` on the local stores.

    .venv/bin/python bench/history_overhead.py               # 7 rounds per variant
    .venv/bin/python bench/history_overhead.py --rounds 15 --calls 20000

Each round is a fresh interpreter timing ``update_cost(user, completion_obj=response)`` (the
JSON file store persisting every call, and the memory store) over 10 users, in batches of
``--calls``. The two variants alternate, round by round, so that the shared machine's noise
falls on both: ``history`` is the library as shipped; ``none`` is the same code with the
history's two costs taken out (the event each change builds, and the store's write of it). The
difference of the medians is the history's cost per call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

RESPONSE = {
    "model": "gpt-4o-2024-08-06",
    "usage": {"prompt_tokens": 1117, "completion_tokens": 46},
}
USERS = [f"user-{n}" for n in range(10)]


def _worker(store: str, variant: str, calls: int, batches: int) -> list[float]:
    """Per-call seconds of each batch, in this process."""
    from budget_manager import BudgetManager, ledger
    from budget_manager.stores import history_files, memory

    if variant == "none":
        ledger._event = lambda *args, **kwargs: None  # type: ignore[assignment]
        history_files.HistoryFiles.append = lambda self, events: None  # type: ignore[method-assign]
        memory.EventLog.keep = lambda self, events: None  # type: ignore[method-assign]
    folder = tempfile.mkdtemp(prefix="bm-history-bench-")
    where = {"store": "memory://"} if store == "memory" else {"path": f"{folder}/b.json"}
    bm = BudgetManager("bench", **where)  # type: ignore[arg-type]
    for user in USERS:
        bm.create_budget(total_budget=1e9, user=user, duration="monthly")
    for n in range(2_000):  # warm-up
        bm.update_cost(USERS[n % 10], completion_obj=RESPONSE)
    times = []
    for _ in range(batches):
        started = time.perf_counter()
        for n in range(calls):
            bm.update_cost(USERS[n % 10], completion_obj=RESPONSE)
        times.append((time.perf_counter() - started) / calls)
    bm.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(*args.worker, args.calls, args.batches)))
        return
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for store in ("json", "memory"):
            for variant in ("history", "none"):
                out = subprocess.run(
                    [
                        *(sys.executable, __file__, "--worker", store, variant),
                        *("--calls", str(args.calls), "--batches", str(args.batches)),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "BUDGET_MANAGER_OFFLINE": "1"},
                ).stdout
                samples.setdefault((store, variant), []).extend(json.loads(out))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{args.rounds} rounds x {args.batches} batches x {args.calls} calls per variant")
    print(f"{'store':8} {'history':>10} {'none':>10} {'cost':>10}")
    for store in ("json", "memory"):
        kept = statistics.median(samples[(store, "history")]) * 1e6
        none = statistics.median(samples[(store, "none")]) * 1e6
        print(f"{store:8} {kept:9.1f}µs {none:9.1f}µs {kept - none:9.1f}µs")


if __name__ == "__main__":
    main()
