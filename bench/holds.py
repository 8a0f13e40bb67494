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
before each run; ceiling pairs/s = EVALSHA/s / 2, since a pair is two scripts. For PostgreSQL it
is ``pgbench`` (8 clients) running the same single-row update (``UPDATE ... SET spent = spent +
0.01``) on one row, or on a random row of ``--users``, in the same database: tps / 2. Redis runs as a
private ``redis-server`` on a free loopback port: ``redis`` without persistence (as the machine's
own Redis runs), ``redis-aof`` with AOF (``appendfsync everysec``, the setting README recommends);
``--redis-url`` names another server for both.

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
    """A private redis-server on a free loopback port, with AOF (appendfsync everysec) or with
    no persistence at all (as the machine's own Redis runs)."""

    def __init__(self, folder: Path, aof: bool) -> None:
        self.port = _free_port()
        self.folder = folder / ("aof" if aof else "none")
        self.folder.mkdir()
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if aof else []
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.folder), "--save", "", *persistence),
                *("--daemonize", "no", "--logfile", str(self.folder / "redis.log")),
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
    """What a store's URL factory may use: a temporary folder and the Redis servers to use."""

    def __init__(self, folder: Path, redis_url: str | None) -> None:
        self.folder = folder
        self.redis_url = redis_url
        self._redis: dict[bool, RedisServer] = {}
        self.databases: list[str] = []  # PostgreSQL databases to drop

    def redis(self, aof: bool) -> str:
        if self.redis_url is not None:
            return self.redis_url
        if aof not in self._redis:
            self._redis[aof] = RedisServer(self.folder, aof)
        return self._redis[aof].url

    def redis_port(self, aof: bool) -> int:
        from urllib.parse import urlsplit

        return urlsplit(self.redis(aof)).port or 6379

    def close(self) -> None:
        for server in self._redis.values():
            server.stop()
        if self.databases:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                for name in self.databases:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def redis_cpu(ctx: Context, aof: bool) -> float:
    """Seconds of CPU the Redis server has used (user + system)."""
    info = _cli(ctx.redis_port(aof), "info", "cpu")
    fields = dict(line.split(":", 1) for line in info.splitlines() if line.startswith("used_cpu_"))
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def json_store(ctx: Context) -> str:
    return f"json://{ctx.folder}/{uuid.uuid4().hex[:8]}.json"


def sqlite_store(ctx: Context) -> str:
    return f"sqlite:///{ctx.folder}/{uuid.uuid4().hex[:8]}.db"


PG_ADMIN = os.environ.get("BUDGET_MANAGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_store(ctx: Context) -> str:
    """A fresh database (dropped at the end)."""
    import psycopg

    name = f"bm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    ctx.databases.append(name)
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def postgres_ceiling(
    ctx: Context, clients: int, users: int, requests: int, url: str
) -> dict[str, float]:
    """pgbench tps of the same single-row update, on one row and on ``users`` rows at random."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_ceiling (id int PRIMARY KEY, spent numeric)")
        conn.execute(
            "INSERT INTO bench_ceiling SELECT g, 0 FROM generate_series(1, %s) g"
            " ON CONFLICT DO NOTHING",
            (users,),
        )
    out = {}
    for mode, pick in (("hot", "1"), ("spread", f"random(1, {users})")):
        script = ctx.folder / f"ceiling-{mode}.sql"
        script.write_text(
            f"\\set id {pick}\nUPDATE bench_ceiling SET spent = spent + 0.01 WHERE id = :id;\n"
        )
        parts = url.split("://", 1)[1]
        host_part, database = parts.rsplit("/", 1)
        user, _, hostport = host_part.rpartition("@")
        host, _, port = hostport.partition(":")
        done = subprocess.run(
            [
                *("pgbench", "-n", "-h", host, "-p", port or "5432", "-U", user or "postgres"),
                *("-c", str(clients), "-j", "2", "-T", "3", "-f", str(script), database),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        rows = [line for line in done.stdout.splitlines() if line.startswith("tps")]
        out[mode] = float(rows[-1].split("=")[1].split()[0])
    return out


def redis_store(aof: bool) -> Callable[[Context], str]:
    return lambda ctx: f"{ctx.redis(aof)}?prefix=bench-{uuid.uuid4().hex[:8]}"


#: store name -> a function giving a fresh, empty store's URL.
STORES: dict[str, Callable[[Context], str]] = {
    "json": json_store,
    "sqlite": sqlite_store,
    "postgresql": postgres_store,
    "redis": redis_store(aof=False),
    "redis-aof": redis_store(aof=True),
}
#: store name -> a function giving the CPU seconds the store's server has used so far.
SERVER_CPU: dict[str, Callable[[Context], float]] = {
    "redis": lambda ctx: redis_cpu(ctx, False),
    "redis-aof": lambda ctx: redis_cpu(ctx, True),
}
#: store name -> a function giving the ceiling in updates per second (hot, spread) of the
#: database at a store's URL.
CEILINGS: dict[str, Callable[[Context, int, int, int, str], dict[str, float]]] = {
    "postgresql": postgres_ceiling,
}


def redis_ceiling(
    ctx: Context, aof: bool, clients: int, users: int, requests: int
) -> dict[str, float]:
    """EVALSHA/s of one comparable update, for one key and for ``users`` keys at random."""
    port = ctx.redis_port(aof)
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


CEILINGS["redis"] = lambda ctx, clients, users, requests, _: redis_ceiling(
    ctx, False, clients, users, requests
)
CEILINGS["redis-aof"] = lambda ctx, clients, users, requests, _: redis_ceiling(
    ctx, True, clients, users, requests
)


# -- workers ---------------------------------------------------------------------------------------
def worker(
    url: str, users: list[str], threads: int, spec: dict[str, Any], ready: Any, go: Any, out: Any
) -> None:
    """One process: open the store, learn every user's levels, then make pairs in ``threads``
    threads (sharing the process's manager, as an application's threads would) until the end."""
    os.environ.setdefault("BUDGET_MANAGER_OFFLINE", "1")
    import threading

    from budget_manager import BudgetManager

    bm = BudgetManager(PROJECT, store=url)
    now = time.time()
    for user in users:  # untimed: the levels every pair needs, as a long-running process has them
        bm._ops.run(bm._ops.flows.levels(user, now))
    counts = [0] * threads
    errors = [0] * threads

    def loop(i: int, start: float, end: float) -> None:
        pick = random.Random(os.getpid() * 100 + i).randrange
        n = len(users)
        while time.time() < start:
            time.sleep(0.0005)
        while time.time() < end:
            user = users[pick(n)] if n > 1 else users[0]
            try:
                bm.reserve(user, amount=AMOUNT).settle(cost=AMOUNT)
            except Exception:
                errors[i] += 1
                continue
            counts[i] += 1

    ready.put(os.getpid())
    go.wait()
    start = spec["start"].value
    end = start + spec["seconds"]
    base_cpu = time.process_time()
    pool = [threading.Thread(target=loop, args=(i, start, end)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cpu = time.process_time() - base_cpu
    bm.close()
    out.put({"pid": os.getpid(), "count": sum(counts), "errors": sum(errors), "cpu": cpu})


def run_once(
    ctx_spawn: Any,
    url: str,
    users: list[str],
    workers: int,
    processes: int,
    seconds: float,
    server_cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """``workers`` loops spread over ``processes`` processes, all starting at once; with
    ``server_cpu``, the CPU the store's server used between the start and the end."""
    ready, out = ctx_spawn.Queue(), ctx_spawn.Queue()
    go = ctx_spawn.Event()
    start = ctx_spawn.Value("d", 0.0)
    spec = {"seconds": seconds, "start": start}
    shares = [
        workers // processes + (1 if i < workers % processes else 0) for i in range(processes)
    ]
    procs = [
        ctx_spawn.Process(target=worker, args=(url, users, n, spec, ready, go, out))
        for n in shares
        if n
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=600)
    start.value = time.time() + 0.3
    go.set()
    used = None
    if server_cpu is not None:
        time.sleep(max(start.value - time.time(), 0))
        used = -server_cpu()
        time.sleep(max(start.value + seconds - time.time(), 0))
        used += server_cpu()
    results = [out.get(timeout=seconds + 600) for _ in procs]
    for p in procs:
        p.join()
    pairs = sum(r["count"] for r in results)
    return {
        "server_cpu_us": None if used is None else 1e6 * used / max(pairs, 1),
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--stores", default="redis,redis-aof,json", help="comma-separated: " + ", ".join(STORES)
    )
    parser.add_argument("--modes", default="hot,spread")
    parser.add_argument("--workers", type=int, default=8, help="concurrent reserve+settle loops")
    parser.add_argument(
        "--layouts",
        default="8,2,1",
        help="numbers of processes the workers are spread over (threads share a process's manager)",
    )
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
            for mode in args.modes.split(","):
                users = ["hot"] if mode == "hot" else [f"user-{i:05d}" for i in range(args.users)]
                url = STORES[store](ctx)
                setup(url, users, 1e9 if mode == "hot" else 1e6)
                for layout in (int(x) for x in args.layouts.split(",")):
                    rows.append(case(args, ctx, spawn, store, mode, url, users, layout))
    finally:
        ctx.close()
        shutil.rmtree(folder, ignore_errors=True)
    info["load_after"] = os.getloadavg()
    print()
    print(table(rows, args))
    print(f"\n{args.seconds:g} s per run; machine: {info}")
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"machine": info, "args": {**vars(args), "out": str(args.out)}, "rows": rows}
    (args.out / "holds.json").write_text(json.dumps(document, indent=2))
    return 0


def case(
    args: argparse.Namespace,
    ctx: Context,
    spawn: Any,
    store: str,
    mode: str,
    url: str,
    users: list[str],
    processes: int,
) -> dict[str, Any]:
    """Runs of one store, mode and layout, each after a measurement of the ceiling."""
    rates: list[float] = []
    ceilings: list[float] = []
    off: list[str] = []
    client_cpu: list[float] = []
    server_cpu: list[float] = []
    for _ in range(args.runs):
        if store in CEILINGS:
            ceiling = CEILINGS[store](ctx, args.workers, args.users, args.ceiling_requests, url)
            ceilings.append(ceiling[mode])
        before = spent(url)
        sample = (lambda: SERVER_CPU[store](ctx)) if store in SERVER_CPU else None
        result = run_once(spawn, url, users, args.workers, processes, args.seconds, sample)
        if result["server_cpu_us"] is not None:
            server_cpu.append(result["server_cpu_us"])
        difference = Decimal(result["pairs"]) * Decimal(str(AMOUNT)) - (spent(url) - before)
        off.append(str(difference))
        rates.append(result["rate"])
        client_cpu.append(result["client_cpu_us"])
        print(
            f"  {store:6s} {mode:6s} {processes} process(es) {result['rate']:9,.0f} pairs/s "
            f"({result['errors']} errors, spent off by {difference}; CPU us/pair: clients "
            f"{result['client_cpu_us']:.0f}"
            + (f", server {server_cpu[-1]:.0f}" if server_cpu else "")
            + (f"; ceiling {ceilings[-1]:,.0f} updates/s" if ceilings else "")
            + ")",
            flush=True,
        )
    row: dict[str, Any] = {
        "store": store,
        "mode": mode,
        "workers": args.workers,
        "processes": processes,
        "pairs_per_s": statistics.median(rates),
        "runs": rates,
        "off_by": off,
        "client_cpu_us_per_pair": statistics.median(client_cpu),
    }
    if server_cpu:
        row["server_cpu_us_per_pair"] = statistics.median(server_cpu)
    if ceilings:
        row["ceiling_evalsha_per_s"] = statistics.median(ceilings)
        row["ceiling_runs"] = ceilings
        row["ceiling_pairs_per_s"] = row["ceiling_evalsha_per_s"] / 2
        row["ratio"] = row["pairs_per_s"] / row["ceiling_pairs_per_s"]
    return row


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"| store | users | {args.workers} workers as | pairs/s (median of {args.runs}) | runs "
        "| ceiling pairs/s (EVALSHA or pgbench tps / 2) | ratio | CPU us/pair client / server |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        users = "1 (hot)" if row["mode"] == "hot" else f"{args.users:,} spread"
        p = row["processes"]
        layout = f"{p} processes" if p == row["workers"] else f"{p} process(es) x threads"
        runs = ", ".join(f"{r:,.0f}" for r in row["runs"])
        ceiling = f"{row['ceiling_pairs_per_s']:,.0f}" if "ceiling_pairs_per_s" in row else "-"
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else "-"
        cpu = f"{row['client_cpu_us_per_pair']:.0f}"
        if "server_cpu_us_per_pair" in row:
            cpu += f" / {row['server_cpu_us_per_pair']:.0f}"
        lines.append(
            f"| {row['store']} | {users} | {layout} | {row['pairs_per_s']:,.0f} | {runs} "
            f"| {ceiling} | {ratio} | {cpu} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
