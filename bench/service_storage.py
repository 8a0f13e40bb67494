"""Benchmark: what the budget service keeps per request, on disk and in memory.

Starts ``budget-manager serve`` over SQLite on 127.0.0.1 (with the interpreter and source tree
given, so an older checkout can be measured the same way) and reports:

- database bytes per ``POST .../cost`` (file and WAL, after a checkpoint) for three request
  streams: a new 224-character model name in every post (the reproduction of issue 9), a new
  120-character name in every post, and one model name throughout; every post carries a fresh
  idempotency key;
- the service's resident memory after a cost posted to each of N distinct projects.

    .venv/bin/python bench/service_storage.py
    .venv/bin/python bench/service_storage.py --python /work/main/.venv/bin/python --tree /work/main
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def service(python: str, tree: Path, db: Path) -> Iterator[tuple[str, int]]:
    """``budget-manager serve`` on a fresh SQLite file: its URL and process id."""
    port = free_port()
    command = [python, "-m", "budget_manager.cli", "serve", "--store", f"sqlite:///{db}"]
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=tree,
        env={**os.environ, "BUDGET_MANAGER_API_KEYS": "", "PYTHONPATH": str(tree)},
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.05)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def database_bytes(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def model_stream(python: str, tree: Path, posts: int, name_length: int | None) -> dict[str, object]:
    """Bytes per post when every post names a new model of ``name_length`` characters (None:
    the same model throughout)."""
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "budgets.db"
        with service(python, tree, db) as (url, _):
            session = requests.Session()
            user = f"{url}/v1/projects/p/users/u"
            session.put(user, json={"total_budget": 1_000_000}, timeout=10).raise_for_status()
            before = database_bytes(db)
            statuses: dict[int, int] = {}
            for n in range(posts):
                model = "m" if name_length is None else f"{n:08d}".ljust(name_length, "x")
                body = {"cost": "0.001", "model": model, "idempotency_key": uuid.uuid4().hex}
                status = session.post(user + "/cost", json=body, timeout=30).status_code
                statuses[status] = statuses.get(status, 0) + 1
            after = database_bytes(db)
    return {
        "posts": posts,
        "model name": "one name" if name_length is None else f"new, {name_length} chars",
        "answers": statuses,
        "bytes": after - before,
        "bytes per post": round((after - before) / posts),
    }


def many_projects(python: str, tree: Path, projects: int) -> dict[str, object]:
    """Resident memory of the service after one cost in each of ``projects`` projects."""
    with (
        tempfile.TemporaryDirectory() as folder,
        service(python, tree, Path(folder) / "budgets.db") as (url, pid),
    ):
        session = requests.Session()
        marks = {}
        for n in range(projects):
            session.post(
                f"{url}/v1/projects/project-{n:06d}/users/u/cost", json={"cost": 1}, timeout=30
            )  # 404 (no budget): the project's store is made and looked up all the same
            if n + 1 in (1_000, projects // 2, projects):
                marks[n + 1] = rss_kib(pid)
    return {"projects": projects, "RSS KiB after n projects": marks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=40_000)
    args = parser.parse_args()
    results = [
        model_stream(args.python, args.tree, args.posts, 224),
        model_stream(args.python, args.tree, args.posts, 120),
        model_stream(args.python, args.tree, args.posts * 5, None),
        many_projects(args.python, args.tree, args.projects),
    ]
    print(json.dumps({"tree": str(args.tree), "results": results}, indent=1))


if __name__ == "__main__":
    main()
