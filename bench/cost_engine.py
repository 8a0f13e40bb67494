"""Cost engine benchmark: import time, completion_cost and cost_per_token per call, beside LiteLLM.

    python bench/cost_engine.py [--repeat 7] [--calls 20000]

Medians over ``--repeat`` runs (min and max shown); LiteLLM is measured in the same run when it
is installed. Writes bench/results/cost_engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parent.parent
RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
}
CACHED = {
    **RESPONSE,
    "usage": {**RESPONSE["usage"], "prompt_tokens_details": {"cached_tokens": 400}},
}


def per_call(function: Callable[[], object], calls: int, repeat: int) -> list[float]:
    """Microseconds per call, one figure per run."""
    function()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        runs.append((time.perf_counter() - start) / calls * 1e6)
    return runs


def import_ms(module: str, repeat: int) -> list[float]:
    """Milliseconds to import ``module`` in a fresh interpreter, less the interpreter's own start."""
    code = (
        "import time, sys; t = time.perf_counter(); import {m}; "
        "print((time.perf_counter() - t) * 1000, 'tiktoken' in sys.modules)"
    )
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", code.format(m=module)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.split()
        runs.append(float(out[0]))
        if module == "budget_manager" and out[1] != "False":
            raise SystemExit("importing budget_manager loaded tiktoken")
    return runs


def summary(runs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import budget_manager as bm

    figures: dict[str, dict[str, dict[str, float]]] = {
        "import (ms)": {"budget_manager": summary(import_ms("budget_manager", args.repeat))},
        "completion_cost, plain response (us)": {
            "budget_manager": summary(
                per_call(lambda: bm.completion_cost(RESPONSE), args.calls, args.repeat)
            )
        },
        "completion_cost, cached prompt (us)": {
            "budget_manager": summary(
                per_call(lambda: bm.completion_cost(CACHED), args.calls, args.repeat)
            )
        },
        "cost_per_token (us)": {
            "budget_manager": summary(
                per_call(lambda: bm.cost_per_token("gpt-4o", 1000, 500), args.calls, args.repeat)
            )
        },
    }
    try:
        import litellm
    except ImportError:
        litellm = None
    if litellm is not None:
        litellm.suppress_debug_info = True
        reference = litellm.ModelResponse(**RESPONSE)
        cached = litellm.ModelResponse(**CACHED)
        few = max(args.calls // 20, 200)
        figures["import (ms)"]["litellm"] = summary(import_ms("litellm", min(args.repeat, 3)))
        figures["completion_cost, plain response (us)"]["litellm"] = summary(
            per_call(lambda: litellm.completion_cost(reference), few, args.repeat)
        )
        figures["completion_cost, cached prompt (us)"]["litellm"] = summary(
            per_call(lambda: litellm.completion_cost(cached), few, args.repeat)
        )
        figures["cost_per_token (us)"]["litellm"] = summary(
            per_call(lambda: litellm.cost_per_token("gpt-4o", 1000, 500), few, args.repeat)
        )

    print(f"{'figure':40} {'budget_manager':>22} {'litellm':>22} {'ratio':>8}")
    for name, by_library in figures.items():
        ours = by_library["budget_manager"]
        theirs = by_library.get("litellm")
        cell = f"{ours['median']:.2f} [{ours['min']:.2f}-{ours['max']:.2f}]"
        other = (
            f"{theirs['median']:.2f} [{theirs['min']:.2f}-{theirs['max']:.2f}]" if theirs else "-"
        )
        ratio = f"{theirs['median'] / ours['median']:.0f}x" if theirs else "-"
        print(f"{name:40} {cell:>22} {other:>22} {ratio:>8}")
    out = ROOT / "bench" / "results" / "cost_engine.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": os.uname().machine, "figures": figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
