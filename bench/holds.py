"""Benchmark: reserve + settle pairs per second from concurrent worker processes, per store, for
one hot user and for many users spread, beside the ceiling of the machine measured in the same run.

    .venv/bin/python bench/holds.py                          # json and redis, 8 workers
    .venv/bin/python bench/holds.py --stores redis --runs 5 --seconds 5

Each worker is a process (so 8 workers are not serialised by one interpreter's GIL) with its own
BudgetManager, making ``bm.reserve(user, amount=0.01)`` then ``hold.settle(cost=0.01)`` in a
loop until the common deadline. The hot case sends every pair to one user (budget large enough
never to refuse); the spread case picks a random user among ``--users`` (each worker first reads
every user's levels, untimed, so the run measures the steady state). After each run the spent
total is read back and must equal pairs x 0.01 exactly.

The ceiling for Redis is ``redis-benchmark`` (8 clients) running EVALSHA of a script making one
comparable update (read a budget's spend, add to it, write it back) against the same server, just
before the store's runs; ceiling pairs/s = EVALSHA/s / 2, since a pair is two scripts. Redis runs
as a private ``redis-server`` on a free loopback port with AOF (``appendfsync everysec``), the
setting README recommends, unless ``--redis-url`` names another.

Adding a store: a function yielding a fresh store URL, in STORES.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PROJECT = "bench-holds"
AMOUNT = 0.01
CEILING_SCRIPT = (
    "local c = tonumber(redis.call('HGET', KEYS[1], 'c') or '0') + tonumber(ARGV[1]) "
    "redis.call('HSET', KEYS[1], 'c', c) return 1"
)


# -- stores ----------------------------------------------------------------------------------------
class RedisServer:
    """A private redis-server on a free loopback port, with AOF."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(folder),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--daemonize",
                "no",
                "--logfile",
                str(folder / "redis.log"),
            ],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _cli(self.port, "ping").strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        _cli(self.port, "shutdown", "nosave")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=30
    )
    return done.stdout


class Context:
    """What a store's URL factory may use: a temporary folder and the Redis to use."""

    def __init__(self, folder: Path, redis_url: str | None) -> None:
        self.folder = folder
        self.redis_url = redis_url
        self._redis: RedisServer | None = None

    def redis(self) -> str:
        if self.redis_url is not None:
            return self.redis_url
        if self._redis is None:
            self._redis = RedisServer(self.folder)
        return self._redis.url

    def redis_port(self) -> int:
        from urllib.parse import urlsplit

        return urlsplit(self.redis()).port or 6379

    def close(self) -> None:
        if self._redis is not None:
            self._redis.stop()


def redis_cpu(ctx: Context) -> float:
    """Seconds of CPU the Redis server has used (user + system)."""
    info = _cli(ctx.redis_port(), "info", "cpu")
    fields = dict(line.split(":", 1) for line in info.splitlines() if line.startswith("used_cpu_"))
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def json_store(ctx: Context) -> str:
    return f"json://{ctx.folder}/{uuid.uuid4().hex[:8]}.json"


def redis_store(ctx: Context) -> str:
    return f"{ctx.redis()}?prefix=bench-{uuid.uuid4().hex[:8]}"


#: store name -> a function giving a fresh, empty store's URL.
STORES: dict[str, Callable[[Context], str]] = {"json": json_store, "redis": redis_store}
#: store name -> a function giving the CPU seconds the store's server has used so far.
SERVER_CPU: dict[str, Callable[[Context], float]] = {"redis": redis_cpu}
#: store name -> a function giving the ceiling in script calls per second (hot, spread).
CEILINGS: dict[str, Callable[[Context, int, int, int], dict[str, float]]] = {}


def redis_ceiling(ctx: Context, clients: int, users: int, requests: int) -> dict[str, float]:
    """EVALSHA/s of one comparable update, for one key and for ``users`` keys at random."""
    port = ctx.redis_port()
    sha = _cli(port, "script", "load", CEILING_SCRIPT).strip()
    out = {}
    for mode, key in (("hot", "bench-ceiling:hot"), ("spread", "bench-ceiling:__rand_int__")):
        done = subprocess.run(
            [
                "redis-benchmark",
                "-p",
                str(port),
                "-c",
                str(clients),
                "-n",
                str(requests),
                "-r",
                str(users),
                "--csv",
                "EVALSHA",
                sha,
                "1",
                key,
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        rows = [line for line in done.stdout.splitlines() if line.startswith('"EVALSHA')]
        out[mode] = float(rows[-1].split(",")[1].strip('"'))
    _cli(
        port,
        "eval",
        "for _, k in ipairs(redis.call('keys', 'bench-ceiling:*')) do redis.call('del', k) end",
        "0",
    )
    return out


CEILINGS["redis"] = redis_ceiling


# -- workers ---------------------------------------------------------------------------------------
def worker(url: str, users: list[str], spec: dict[str, Any], ready: Any, go: Any, out: Any) -> None:
    """One process: open the store, learn every user's levels, then make pairs until the end."""
    os.environ.setdefault("BUDGET_MANAGER_OFFLINE", "1")
    from budget_manager import BudgetManager

    bm = BudgetManager(PROJECT, store=url)
    now = time.time()
    for user in users:  # untimed: the levels every pair needs, as a long-running process has them
        bm._ops.run(bm._ops.flows.levels(user, now))
    rng = random.Random(os.getpid())
    ready.put(os.getpid())
    go.wait()
    base_cpu = time.process_time()
    start = spec["start"].value
    end = start + spec["seconds"]
    while time.time() < start:
        time.sleep(0.0005)
    count = errors = 0
    pick = rng.randrange
    n = len(users)
    while time.time() < end:
        user = users[pick(n)] if n > 1 else users[0]
        try:
            bm.reserve(user, amount=AMOUNT).settle(cost=AMOUNT)
        except Exception:
            errors += 1
            continue
        count += 1
    cpu = time.process_time() - base_cpu
    bm.close()
    out.put({"pid": os.getpid(), "count": count, "errors": errors, "cpu": cpu})


def run_once(
    ctx_spawn: Any, url: str, users: list[str], workers: int, seconds: float
) -> dict[str, Any]:
    ready, out = ctx_spawn.Queue(), ctx_spawn.Queue()
    go = ctx_spawn.Event()
    start = ctx_spawn.Value("d", 0.0)
    spec = {"seconds": seconds, "start": start}
    procs = [
        ctx_spawn.Process(target=worker, args=(url, users, spec, ready, go, out))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=600)
    start.value = time.time() + 0.3
    go.set()
    results = [out.get(timeout=seconds + 600) for _ in procs]
    for p in procs:
        p.join()
    pairs = sum(r["count"] for r in results)
    return {
        "pairs": pairs,
        "errors": sum(r["errors"] for r in results),
        "rate": pairs / seconds,
        "client_cpu_us": 1e6 * sum(r["cpu"] for r in results) / max(pairs, 1),
    }


def spent(url: str) -> Decimal:
    from budget_manager import BudgetManager

    bm = BudgetManager(PROJECT, store=url)
    try:
        return sum((r.current_cost for r in bm.store.records().values()), Decimal(0))
    finally:
        bm.close()


def setup(url: str, users: list[str], budget: float) -> None:
    from budget_manager import BudgetManager

    bm = BudgetManager(PROJECT, store=url)
    for user in users:
        bm.create_budget(total_budget=budget, user=user)
    bm.close()


# -- the run ---------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    redis_version = ""
    if shutil.which("redis-server"):
        redis_version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True
        ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_before": os.getloadavg(),
        "redis": redis_version,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--stores", default="json,redis", help="comma-separated: " + ", ".join(STORES)
    )
    parser.add_argument("--modes", default="hot,spread")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--users", type=int, default=10_000, help="users of the spread case")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one run")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (the median is shown)")
    parser.add_argument("--ceiling-requests", type=int, default=200_000)
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of a private one")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    os.environ.setdefault("BUDGET_MANAGER_OFFLINE", "1")
    spawn = mp.get_context("spawn")
    folder = Path(tempfile.mkdtemp(prefix="bm-bench-holds-"))
    ctx = Context(folder, args.redis_url)
    info = machine()
    rows: list[dict[str, Any]] = []
    print(f"machine: {info['cpus']} CPUs ({info['cpu']}), load {info['load_before']}", flush=True)
    try:
        for store in args.stores.split(","):
            ceiling = None
            if store in CEILINGS:
                ceiling = CEILINGS[store](ctx, args.workers, args.users, args.ceiling_requests)
            for mode in args.modes.split(","):
                users = ["hot"] if mode == "hot" else [f"user-{i:05d}" for i in range(args.users)]
                url = STORES[store](ctx)
                setup(url, users, 1e9 if mode == "hot" else 1e6)
                rates, lost = [], []
                for _ in range(args.runs):
                    before = spent(url)
                    cpu = SERVER_CPU[store](ctx) if store in SERVER_CPU else None
                    result = run_once(spawn, url, users, args.workers, args.seconds)
                    if cpu is not None:
                        used = SERVER_CPU[store](ctx) - cpu
                        result["server_cpu_us"] = 1e6 * used / max(result["pairs"], 1)
                    after = spent(url)
                    expected = Decimal(result["pairs"]) * Decimal(str(AMOUNT))
                    lost.append(str(expected - (after - before)))
                    rates.append(result["rate"])
                    print(
                        f"  {store:6s} {mode:6s} {result['rate']:9,.0f} pairs/s "
                        f"({result['errors']} errors, spent off by {expected - (after - before)}, "
                        f"CPU us/pair: clients {result['client_cpu_us']:.0f}, "
                        f"server {result.get('server_cpu_us', 0):.0f})",
                        flush=True,
                    )
                row: dict[str, Any] = {
                    "store": store,
                    "mode": mode,
                    "pairs_per_s": statistics.median(rates),
                    "runs": rates,
                    "off_by": lost,
                }
                if ceiling is not None:
                    row["ceiling_evalsha_per_s"] = ceiling[mode]
                    row["ceiling_pairs_per_s"] = ceiling[mode] / 2
                    row["ratio"] = row["pairs_per_s"] / row["ceiling_pairs_per_s"]
                rows.append(row)
    finally:
        ctx.close()
        shutil.rmtree(folder, ignore_errors=True)
    info["load_after"] = os.getloadavg()
    print()
    print(f"| store | users | pairs/s (median of {args.runs}) | runs | ceiling pairs/s | ratio |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        users = "1 (hot)" if row["mode"] == "hot" else f"{args.users:,} spread"
        runs = ", ".join(f"{r:,.0f}" for r in row["runs"])
        ceiling = (
            f"{row['ceiling_pairs_per_s']:,.0f} (EVALSHA {row['ceiling_evalsha_per_s']:,.0f}/s)"
            if "ceiling_pairs_per_s" in row
            else "-"
        )
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else "-"
        print(
            f"| {row['store']} | {users} | {row['pairs_per_s']:,.0f} | {runs} | {ceiling} | {ratio} |"
        )
    print(f"\n{args.workers} worker processes, {args.seconds:g} s per run; machine: {info}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "holds.json").write_text(
        json.dumps(
            {"machine": info, "args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
