"""Cold start: a fresh process runs the seed's text example (import, create a budget, price one call
from its text, read the spend back), for budget_manager and for LiteLLM in the same run.

    python bench/coldstart.py [--runs 15] [--libs ours,litellm] [--before PATH]

Each run is a new interpreter in a new empty folder. The parent times the whole process (wall); the
child reports its phases: the import of the library, the tokenizer load (importing tiktoken and
building the encoding: ours does it in the first ``update_cost``, LiteLLM while it is imported) and
the rest (creating the budget, pricing the call, reading the spend; the price table's first read is
in here). Medians over the runs, min and max beside them; runs of the libraries alternate, so all
see the same load on a shared machine. ``--before PATH`` adds the budget_manager of another checkout
(e.g. a ``git worktree`` of an earlier commit) as a third library. Writes
bench/results/coldstart.json.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

# The seed's third example, with perf_counter marks between its steps. `timed` wraps the function
# that loads an encoding, so the time spent loading the tokenizer can be told apart.
CHILD = """
import json, sys, time
start = time.perf_counter()
tokenizer = 0.0

def timed(function):
    def wrapper(*args, **kwargs):
        global tokenizer
        t = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            tokenizer += time.perf_counter() - t
    return wrapper

if sys.argv[1] == "ours":
    from budget_manager import BudgetManager
    import budget_manager.tokens as tokens
    tokens.get_encoding = timed(tokens.get_encoding)
else:
    t = time.perf_counter()
    import tiktoken  # what LiteLLM's import pulls in first, counted as tokenizer load
    tokenizer += time.perf_counter() - t
    tiktoken.get_encoding = timed(tiktoken.get_encoding)
    from litellm import BudgetManager
imported = time.perf_counter()

budget_manager = BudgetManager(project_name="test_project")
user = "12345"
budget_manager.create_budget(total_budget=10, user=user, duration="daily")
budget_manager.update_cost(
    user=user,
    model="gpt-3.5-turbo",
    input_text="hello world",
    output_text="it's a sunny day in san francisco",
)
cost = budget_manager.get_current_cost(user=user)
end = time.perf_counter()
print(json.dumps({
    "cost": cost,
    "script": end - start,
    "import": imported - start,
    "tokenizer": tokenizer,
}))
"""

LABELS = {"ours": "budget_manager", "litellm": "litellm.BudgetManager", "before": "budget_manager"}


def one_run(lib: str, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bm-coldstart-") as folder:
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, "litellm" if lib == "litellm" else "ours"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{lib}: {done.stderr.strip().splitlines()[-1:]}")
    phases: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    # LiteLLM loads its tokenizer during the import, ours during update_cost: split them out.
    if lib == "litellm":
        phases["import"] -= phases["tokenizer"]
    phases["rest"] = phases["script"] - phases["import"] - phases["tokenizer"]
    phases["wall"] = wall
    return phases


def interpreter_wall(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - t0


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--libs", default="ours,litellm")
    parser.add_argument("--before", type=Path, help="another checkout of budget_manager to time")
    parser.add_argument("--out", type=Path, default=RESULTS / "coldstart.json")
    args = parser.parse_args(argv)
    libs = [lib for lib in args.libs.split(",") if lib]

    base = dict(os.environ)
    base["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # else LiteLLM fetches its price map at import
    envs = {lib: {**base, "PYTHONPATH": str(ROOT)} for lib in libs}
    if args.before:
        libs.insert(0, "before")
        envs["before"] = {**base, "PYTHONPATH": str(args.before.resolve())}
        LABELS["before"] = f"budget_manager at {args.before}"

    # Bytecode as an installed package has it (pip compiles at install), even where
    # PYTHONDONTWRITEBYTECODE keeps the warm-up from writing it.
    for lib in libs:
        if lib != "litellm":
            tree = Path(envs[lib]["PYTHONPATH"]) / "budget_manager"
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True)
    for lib in libs:  # warm-up: files in the page cache
        one_run(lib, envs[lib])
    runs: dict[str, list[dict[str, float]]] = {lib: [] for lib in libs}
    bare: list[float] = []
    for _ in range(args.runs):
        bare.append(interpreter_wall(base))
        for lib in libs:
            runs[lib].append(one_run(lib, envs[lib]))

    costs = {lib: {r["cost"] for r in runs[lib]} for lib in libs}
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "runs": args.runs,
        "bare_interpreter": summary(bare),
        "libraries": {
            lib: {
                "cost": sorted(costs[lib]),
                **{
                    phase: summary([r[phase] for r in runs[lib]])
                    for phase in ("wall", "script", "import", "tokenizer", "rest")
                },
                "samples": runs[lib],
            }
            for lib in libs
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    def ms(lib: str, phase: str) -> str:
        s = result["libraries"][lib][phase]
        return f"{s['median'] * 1000:,.0f} [{s['min'] * 1000:,.0f}–{s['max'] * 1000:,.0f}]"

    print(f"cold start, medians of {args.runs} runs [min–max], ms")
    print(f"bare interpreter (python -c pass): {result['bare_interpreter']['median'] * 1000:.0f}")
    print("| | wall (process) | import | tokenizer load | rest | cost |")
    print("|---|---|---|---|---|---|")
    for lib in libs:
        phases = " | ".join(ms(lib, p) for p in ("wall", "import", "tokenizer", "rest"))
        print(f"| {LABELS[lib]} | {phases} | {sorted(costs[lib])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
