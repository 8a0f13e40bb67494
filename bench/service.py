"""Benchmark: atomic cost updates through the budget service.

Starts ``budget-manager serve`` on 127.0.0.1 over SQLite and/or PostgreSQL, then has N client
processes (keep-alive HTTP sessions) send REQUESTS ``POST /v1/projects/{p}/users/{u}/cost``
between them, each with an idempotency key, and reports throughput and p50/p99 latency: the
median of RUNS runs. Checks the final total is exact.

    .venv/bin/python bench/service.py --store sqlite --store postgresql
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _service import PG_ADMIN, ProcessServer

COST = "0.0001725"
KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def client(url: str, user: str, count: int, start: Any, out: Any) -> None:
    """One client process: ``count`` cost updates of ``user`` on one keep-alive connection."""
    host, port = url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port))
    path = f"/v1/projects/bench/users/{user}/cost"

    def post(body: str) -> None:
        conn.request("POST", path, body=body, headers=AUTH)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(data)

    post(json.dumps({"cost": "0"}))  # warm up
    latencies = []
    start.wait()
    for _ in range(count):
        body = json.dumps({"cost": COST, "model": "m", "idempotency_key": uuid.uuid4().hex})
        t0 = time.perf_counter()
        post(body)
        latencies.append(time.perf_counter() - t0)
    out.put(latencies)


def one_run(url: str, total: int, clients: int, users: int = 1) -> dict[str, float]:
    names = [f"hot{i}" for i in range(users)]
    for name in names:
        requests.put(
            f"{url}/v1/projects/bench/users/{name}",
            json={"total_budget": 1e9},
            headers=AUTH,
            timeout=10,
        ).raise_for_status()
    start = mp.Event()
    out: Any = mp.Queue()
    per = total // clients
    procs = [
        mp.Process(target=client, args=(url, names[i % users], per, start, out))
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every client import, connect and warm up
    t0 = time.perf_counter()
    start.set()
    latencies: list[float] = []
    for _ in procs:
        latencies.extend(out.get())
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    spent = Decimal(0)
    for name in names:
        got = requests.get(f"{url}/v1/projects/bench/users/{name}", headers=AUTH, timeout=10)
        spent += Decimal(str(got.json()["data"]["current_cost"]))
    if spent != Decimal(COST) * per * clients:
        raise RuntimeError(f"total {spent} != {Decimal(COST) * per * clients}")
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def bench_store(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="bm-bench-")
    if kind == "sqlite":
        url = f"sqlite:///{folder}/bench.db"
    else:
        import psycopg

        name = f"bm_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    server = ProcessServer(url, keys=(KEY,), workers=args.workers).start()
    try:
        runs = []
        for _ in range(args.runs):
            project_run = one_run(server.url, args.requests, args.clients, args.users)
            runs.append(project_run)
            requests.post(  # the next run starts from zero
                f"{server.url}/set_budget",
                json={"project_name": "bench", "user_dict": {}},
                headers=AUTH,
                timeout=30,
            ).raise_for_status()
    finally:
        server.stop()
        if kind != "sqlite":
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    summary = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {"store": kind, "runs": runs, "median": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--users", type=int, default=1, help="users the clients spread over")
    args = parser.parse_args()
    results = []
    for kind in args.store or ["sqlite", "postgresql"]:
        result = bench_store(kind, args)
        results.append(result)
        m = result["median"]
        print(
            f"{kind:10s} {args.requests} requests, {args.clients} clients, {args.users} user(s), "
            f"{args.workers} worker(s): {m['requests_per_s']:.0f} req/s  p50 {m['p50_ms']:.2f} ms  "
            f"p99 {m['p99_ms']:.2f} ms  (median of {args.runs})",
            flush=True,
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (out / f"service-{stamp}.json").write_text(
        json.dumps({"cpus": os.cpu_count(), "args": vars(args), "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
