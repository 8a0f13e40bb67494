"""The command line on 100,000 users: ``budget-manager import`` (``--replace``, one atomic step,
and the default merge, one budget at a time), ``export`` as JSON and CSV, and ``users`` piped,
on a JSON file and a SQLite store.

    python bench/cli.py [--users 100000] [--runs 3] [--stores json,sqlite] [--merge]

Each run is the real command in a fresh interpreter (start-up included, as an operator sees it)
on a fresh store; medians over the runs, min and max beside them. ``--merge`` also times the
merge import (slow: a transaction per budget). Writes bench/results/cli.json.
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
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def user_dict(count: int) -> dict[str, object]:
    """``count`` budgets in LiteLLM's format, a tenth of them under ten teams."""
    users: dict[str, object] = {
        f"team-{t}": {"total_budget": 1000, "current_cost": 0, "model_cost": {}} for t in range(10)
    }
    for n in range(count - len(users)):
        record: dict[str, object] = {
            "total_budget": 10,
            "current_cost": 0.125,
            "model_cost": {"gpt-4o": 0.1, "gpt-4o-mini": 0.025},
            "duration": 30,
            "created_at": time.time(),
            "last_updated_at": time.time(),
        }
        if n % 10 == 0:
            record["parent"] = f"team-{n % 100 // 10}"
        users[f"user-{n}"] = record
    return users


def timed(*args: str) -> float:
    """Seconds the command takes, run as ``python -m budget_manager.cli ARGS``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUDGET_MANAGER_")}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "budget_manager.cli", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**env, "BUDGET_MANAGER_OFFLINE": "1"},
    )
    return time.perf_counter() - start


def run(count: int, runs: int, stores: list[str], merge: bool) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bm-bench-cli-") as folder:
        source = Path(folder) / "users.json"
        source.write_text(json.dumps(user_dict(count)))
        for n in range(runs):
            for kind in stores:
                store = (
                    f"{folder}/{kind}-{n}.json" if kind == "json" else f"sqlite:///{folder}/{n}.db"
                )
                at = ("--store", store)
                add = samples.setdefault
                add(f"{kind} import --replace", []).append(
                    timed("import", str(source), "--replace", *at)
                )
                add(f"{kind} export json", []).append(
                    timed("export", "--output", f"{folder}/o.json", *at)
                )
                add(f"{kind} export csv", []).append(
                    timed("export", "--format", "csv", "--output", f"{folder}/o.csv", *at)
                )
                add(f"{kind} users (piped)", []).append(timed("users", *at))
                if merge:
                    merged = (
                        f"{folder}/m-{n}.json" if kind == "json" else f"sqlite:///{folder}/m{n}.db"
                    )
                    add(f"{kind} import (merge)", []).append(
                        timed("import", str(source), "--store", merged)
                    )
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stores", default="json,sqlite")
    parser.add_argument("--merge", action="store_true")
    args = parser.parse_args()
    samples = run(args.users, args.runs, args.stores.split(","), args.merge)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"{args.users:,} users, {args.runs} runs, {machine}; seconds, median (min-max)")
    for name, times in samples.items():
        print(f"  {name:<24} {statistics.median(times):7.2f}  ({min(times):.2f}-{max(times):.2f})")
    RESULTS.mkdir(exist_ok=True)
    out = {"users": args.users, "machine": machine, "seconds": samples}
    (RESULTS / "cli.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
