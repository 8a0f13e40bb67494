"""Run every benchmark for budget_manager and, when it is installed, for litellm.BudgetManager on
the same inputs in the same run; print a table and write ``bench/results/latest.{json,md}``.

    .venv/bin/python -m bench            # full run (about 10 minutes with LiteLLM)
    .venv/bin/python -m bench --quick    # smaller stores, fewer repeats (about 2 minutes)

Every case runs in a fresh interpreter in its own temporary folder (one folder per library: both
keep their files in the working folder). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import inputs
from bench.report import Row, render_markdown, render_table
from bench.worker import summarize

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
IMPORT_NAMES = {"ours": "budget_manager", "litellm": "litellm"}
LIBRARY_LABELS = {"ours": "budget_manager", "litellm": "litellm.BudgetManager"}


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.python = sys.executable
        self.tmp = Path(tempfile.mkdtemp(prefix="bm-bench-"))
        self.env = dict(os.environ)
        self.env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # else litellm fetches prices at import
        self.env["BUDGET_MANAGER_OFFLINE"] = "1"
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        self.counter = 0
        self.errors: list[str] = []

    def log(self, text: str) -> None:
        if not self.args.silent:
            print(text, file=sys.stderr, flush=True)

    def folder(self, lib: str, label: str) -> Path:
        self.counter += 1
        path = self.tmp / lib / f"{self.counter:03d}-{label}"
        path.mkdir(parents=True)
        return path

    def worker(self, lib: str, spec: dict[str, Any], cwd: Path) -> dict[str, Any] | None:
        spec = {"library": lib, **spec}
        try:
            done = subprocess.run(
                [self.python, "-m", "bench.worker", json.dumps(spec)],
                cwd=cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=self.args.case_timeout,
            )
        except subprocess.TimeoutExpired:
            self.errors.append(f"{lib} {spec}: timed out after {self.args.case_timeout} s")
            self.log(f"  {lib}: timed out")
            return None
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            self.errors.append(f"{lib} {spec['case']} {spec.get('figure', '')}: {' | '.join(tail)}")
            self.log(f"  {lib}: FAILED: {' | '.join(tail)}")
            return None
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    # -- 1. import time ------------------------------------------------------------------------
    def import_time(self, libs: list[str]) -> dict[str, Any]:
        """Fresh interpreters: time of the import statement alone (perf_counter around it), and
        the whole process's wall time minus that of an interpreter that imports nothing."""
        out: dict[str, Any] = {lib: {"import": [], "process": []} for lib in libs}
        baseline: list[float] = []
        cwd = self.folder("both", "import")

        def run(code: str) -> tuple[float, str]:
            t0 = time.perf_counter()
            done = subprocess.run(
                [self.python, "-c", code], cwd=cwd, env=self.env, capture_output=True, text=True
            )
            wall = time.perf_counter() - t0
            if done.returncode:
                raise RuntimeError(done.stderr.strip().splitlines()[-1])
            return wall, done.stdout.strip()

        code = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"
        for lib in libs:  # warm-up: compile bytecode, fill the page cache
            run(code.format(IMPORT_NAMES[lib]))
        for _ in range(self.args.import_repeats):
            baseline.append(run("pass")[0])
            for lib in libs:
                wall, printed = run(code.format(IMPORT_NAMES[lib]))
                out[lib]["import"].append(float(printed))
                out[lib]["process"].append(wall)
        base = statistics.median(baseline)
        for lib in libs:
            out[lib]["process_minus_baseline"] = [w - base for w in out[lib]["process"]]
        out["baseline"] = baseline
        return out

    # -- 2-5. per-call figures ----------------------------------------------------------------
    def per_call(self, lib: str, figure: str, size: int) -> dict[str, Any] | None:
        spec = {
            "case": "per_call",
            "figure": figure,
            "size": size,
            "batch_seconds": self.args.batch_seconds,
            "repeats": self.args.repeats,
            "max_seconds": self.args.max_seconds,
        }
        # Several fresh processes, their batches pooled: one noisy spell on a shared machine
        # moves the median less.
        runs = [
            self.worker(lib, spec, self.folder(lib, f"{figure}-{size}"))
            for _ in range(self.args.runs)
        ]
        done = [r for r in runs if r is not None]
        if not done:
            return None
        merged: dict[str, Any] = dict(done[-1])
        for key in ("seconds", "returned"):
            if key in merged:
                pooled = [x for r in done for x in r[key]["samples"]]
                merged[key] = {**summarize(pooled), "batch": done[-1][key].get("batch")}
                merged[key]["runs"] = len(done)
        return merged

    # -- 6. create + reopen --------------------------------------------------------------------
    def create_reopen(self, lib: str, size: int) -> tuple[dict[str, Any] | None, Any]:
        cwd = self.folder(lib, f"create-{size}")
        created = self.worker(lib, {"case": "create", "size": size}, cwd)
        if created is None:
            return None, None
        reopened = [
            self.worker(lib, {"case": "reopen", "size": size}, cwd)
            for _ in range(self.args.reopen_repeats)
        ]
        return created, [r for r in reopened if r is not None]

    # -- 7. memory -----------------------------------------------------------------------------
    def memory(self, lib: str, size: int) -> dict[str, Any] | None:
        cwd = self.folder(lib, f"memory-{size}")
        self.write_store(cwd / inputs.STORE_FILES[lib], size)
        return self.worker(lib, {"case": "memory", "size": size}, cwd)

    def interpreter_rss(self) -> int:
        """Peak RSS of an interpreter that only loads the worker module (json, resource)."""
        samples = []
        for _ in range(3):
            done = subprocess.run(
                [self.python, "-m", "bench.worker", "--peak-rss"],
                env=self.env,
                capture_output=True,
                text=True,
                check=True,
            )
            samples.append(int(done.stdout))
        return int(statistics.median(samples))

    def write_store(self, path: Path, size: int) -> None:
        """The starting store, written by a child so this process stays small."""
        subprocess.run(
            [self.python, "-m", "bench.worker", "--write-store", str(path), str(size)],
            env=self.env,
            check=True,
        )

    # -- 8. many processes, one user -----------------------------------------------------------
    def concurrent(self, lib: str) -> dict[str, Any]:
        procs, updates = self.args.processes, self.args.updates
        cwd = self.folder(lib, "concurrent")
        self.write_store(cwd / inputs.STORE_FILES[lib], 10)
        spec = json.dumps({"library": lib, "case": "concurrent", "updates": updates})
        children = [
            subprocess.Popen(
                [self.python, "-m", "bench.worker", spec],
                cwd=cwd,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(procs)
        ]
        for child in children:  # every process imported and opened the store: start together
            assert child.stdout is not None
            child.stdout.readline()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, err = child.communicate(timeout=self.args.case_timeout)
            if child.returncode:
                self.errors.append(f"{lib} concurrent: {err.strip().splitlines()[-1:]}")
                continue
            results.append(json.loads(out.strip().splitlines()[-1]))
        read = self.worker(lib, {"case": "read_cost"}, cwd) or {"error": "reader failed"}
        if not results:
            return {"error": "every process failed"}
        wall = max(r["end"] for r in results) - min(r["start"] for r in results)
        unit = results[0]["unit_cost"]
        expected = unit * updates * len(results)
        out: dict[str, Any] = {
            "processes": len(results),
            "updates_per_process": updates,
            "wall_seconds": wall,
            "throughput": updates * len(results) / wall,
            "unit_cost": unit,
            "expected_cost": expected,
        }
        if "error" in read:
            out["readback_error"] = read["error"]
            out["lost"] = updates * len(results)
        else:
            out["read_cost"] = read["current_cost"]
            out["lost"] = round((expected - read["current_cost"]) / unit)
        return out


def summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
    }
    for dist in ("budget-manager", "litellm", "tiktoken"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = None
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        info["commit"] = None
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller stores, fewer repeats")
    parser.add_argument(
        "--libs", default=None, help="comma-separated: ours,litellm (default: both if installed)"
    )
    parser.add_argument("--sizes", default=None, help="store sizes for per-call figures")
    parser.add_argument("--big", type=int, default=None, help="users for create/reopen/memory")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--updates", type=int, default=None, help="updates per process (fig. 8)")
    parser.add_argument("--repeats", type=int, default=None, help="timed batches per process")
    parser.add_argument("--runs", type=int, default=None, help="processes per per-call case")
    parser.add_argument("--out", default=str(RESULTS), help="folder for latest.json/latest.md")
    parser.add_argument("--case-timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--silent", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = [
        int(s) for s in (args.sizes or ("10,1000" if quick else "10,10000,100000")).split(",")
    ]
    args.big = args.big or (10_000 if quick else 100_000)
    args.updates = args.updates or (200 if quick else 2000)
    args.repeats = args.repeats or (5 if quick else 25)
    args.batch_seconds = 0.03 if quick else 0.05
    args.max_seconds = 1.0 if quick else 5.0
    args.runs = args.runs or (1 if quick else 3)
    args.import_repeats = 3 if quick else 7
    args.reopen_repeats = 3 if quick else 5
    if args.libs:
        args.libs = [x.strip() for x in args.libs.split(",") if x.strip()]
    else:
        args.libs = ["ours"] + (["litellm"] if importlib.util.find_spec("litellm") else [])
    return args


PER_CALL = [
    ("update_response", "update_cost(completion_obj=response), persisted"),
    ("update_text", "update_cost(model, input_text, output_text), persisted"),
    ("projected", "projected_cost(model, 10 messages, user)"),
    ("get_current", "get_current_cost(user)"),
]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runner = Runner(args)
    libs = args.libs
    info = machine()
    raw: dict[str, Any] = {"args": {k: v for k, v in vars(args).items()}, "machine": info}
    rows: list[Row] = []
    started = time.perf_counter()
    try:
        runner.log(f"bench: {', '.join(libs)}; sizes {args.sizes}; big {args.big}; in {runner.tmp}")

        runner.log("1. import time")
        imported = runner.import_time(libs)
        raw["import"] = imported
        rows.append(
            Row(
                "import",
                "1. import time (fresh interpreter)",
                "ms",
                {lib: summary(imported[lib]["import"]) for lib in libs},
                target=("ratio_min", 20.0),
            )
        )

        raw["per_call"] = {}
        for figure, label in PER_CALL:
            number = {"update_response": 2, "update_text": 3, "projected": 4, "get_current": 5}
            for size in args.sizes:
                runner.log(f"{number[figure]}. {figure} at {size:,} users")
                got = {lib: runner.per_call(lib, figure, size) for lib in libs}
                raw["per_call"][f"{figure}@{size}"] = got
                target: tuple[str, float] | None = None
                absolute = None
                if figure in ("update_response", "update_text"):
                    target = ("ratio_min", 20.0)
                if figure == "update_response":
                    absolute = 25e-6
                rows.append(
                    Row(
                        f"{figure}@{size}",
                        f"{number[figure]}. {label}, {size:,} users",
                        "us",
                        {lib: r["seconds"] for lib, r in got.items() if r},
                        target=target,
                        absolute_max=absolute,
                        extra={
                            lib: {k: v for k, v in r.items() if k != "seconds"}
                            for lib, r in got.items()
                            if r
                        },
                    )
                )
            if figure.startswith("update") and "litellm" in libs:
                # The conservative comparison: LiteLLM timed only until its call returns, its
                # whole-file save left running in a background thread (not yet persisted).
                for size in args.sizes:
                    got = raw["per_call"][f"{figure}@{size}"]
                    theirs = (got.get("litellm") or {}).get("returned")
                    if got.get("ours") and theirs:
                        rows.append(
                            Row(
                                f"{figure}_returned@{size}",
                                f"{number[figure]}r. same, LiteLLM timed to return only "
                                f"(its save still running), {size:,} users",
                                "us",
                                {"ours": got["ours"]["seconds"], "litellm": theirs},
                            )
                        )
            if figure.startswith("update") and len(args.sizes) > 1:
                small, large = min(args.sizes), max(args.sizes)
                scale = {}
                for lib in libs:
                    a = raw["per_call"][f"{figure}@{small}"].get(lib)
                    b = raw["per_call"][f"{figure}@{large}"].get(lib)
                    if a and b:
                        scale[lib] = {"median": b["seconds"]["median"] / a["seconds"]["median"]}
                rows.append(
                    Row(
                        f"{figure}_scaling",
                        f"{number[figure]}. {figure}: cost at {large:,} users / at {small:,}",
                        "x",
                        scale,
                        target=("ours_max", 2.0),
                        ratio=False,
                    )
                )

        raw["create"], raw["reopen"] = {}, {}
        runner.log(f"6. create_budget x {args.big:,} and reopening")
        created, reopened = {}, {}
        for lib in libs:
            c, r = runner.create_reopen(lib, args.big)
            raw["create"][lib], raw["reopen"][lib] = c, r
            if c:
                created[lib] = {"median": c["seconds"], "min": c["seconds"], "max": c["seconds"]}
            if r:
                reopened[lib] = summary([x["seconds"] for x in r])
        rows.append(
            Row(
                "create",
                f"6. create_budget for {args.big:,} users, then save",
                "s",
                created,
                extra={lib: raw["create"][lib] for lib in libs if raw["create"][lib]},
            )
        )
        rows.append(
            Row("reopen", f"6. reopen a {args.big:,}-user store (first read)", "s", reopened)
        )

        runner.log(f"7. peak memory holding {args.big:,} users")
        base_rss = runner.interpreter_rss()
        raw["memory"] = {"interpreter_rss_bytes": base_rss}
        mem, mem_data = {}, {}
        for lib in libs:
            m = runner.memory(lib, args.big)
            raw["memory"][lib] = m
            if m:
                mem[lib] = {"median": (m["peak_bytes"] - base_rss) / 1e6}
                mem_data[lib] = {"median": (m["peak_bytes"] - m["after_import_bytes"]) / 1e6}
        rows.append(
            Row(
                "memory",
                f"7. peak RSS with {args.big:,} users, minus bare interpreter",
                "MB",
                mem,
                target=("ours_max", 150.0),
            )
        )
        rows.append(
            Row(
                "memory_data",
                f"7. peak RSS with {args.big:,} users, minus RSS after import",
                "MB",
                mem_data,
            )
        )

        runner.log(f"8. {args.processes} processes x {args.updates} updates of one user")
        raw["concurrent"] = {}
        tput, lost = {}, {}
        for lib in libs:
            c = runner.concurrent(lib)
            raw["concurrent"][lib] = c
            if "throughput" in c:
                tput[lib] = {"median": c["throughput"]}
                lost[lib] = {"median": c["lost"]}
        rows.append(
            Row(
                "concurrent_throughput",
                f"8. {args.processes} processes updating one user: throughput",
                "updates/s",
                tput,
                higher_is_better=True,
            )
        )
        rows.append(
            Row(
                "concurrent_lost",
                f"8. lost updates of {args.processes * args.updates:,}",
                "count",
                lost,
                target=("ours_max", 0.0),
                ratio=False,
            )
        )
    finally:
        if not args.keep:
            shutil.rmtree(runner.tmp, ignore_errors=True)

    info["loadavg_end"] = list(os.getloadavg())
    info["seconds"] = round(time.perf_counter() - started, 1)
    raw["rows"] = [row.as_dict() for row in rows]
    raw["errors"] = runner.errors
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(raw, indent=2) + "\n")
    (out / "latest.md").write_text(render_markdown(rows, info, libs, runner.errors))
    print(render_table(rows, libs))
    if runner.errors:
        print("\nerrors:\n  " + "\n  ".join(runner.errors))
    print(f"\nwrote {out / 'latest.json'} and {out / 'latest.md'} ({info['seconds']} s)")
    return 1 if runner.errors else 0
