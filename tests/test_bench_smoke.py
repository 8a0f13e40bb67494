"""The benchmark command runs end to end (our library only, tiny sizes) and reports every figure.

Timings are never asserted: this only checks that `python -m bench` works and is complete.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIGURES = ["update_response", "update_text", "projected", "get_current"]


def test_bench_quick_run_reports_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--libs=ours",
            "--sizes=10,20",
            "--big=50",
            "--processes=2",
            "--updates=5",
            "--repeats=3",
            f"--out={tmp_path}",
            "--silent",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["errors"] == []
    rows = {row["id"]: row for row in result["rows"]}
    expected = {"import", "create", "reopen", "memory", "memory_data"}
    expected |= {"concurrent_throughput", "concurrent_lost"}
    for figure in FIGURES:
        expected |= {f"{figure}@10", f"{figure}@20"}
    expected |= {"update_response_scaling", "update_text_scaling"}
    assert expected <= set(rows), sorted(expected - set(rows))
    for name in expected:
        assert rows[name]["values"]["ours"]["median"] >= 0, name
    assert rows["concurrent_lost"]["values"]["ours"]["median"] == 0
    assert "| figure |" in (tmp_path / "latest.md").read_text()


def test_coldstart_reports_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "coldstart.json"
    done = subprocess.run(
        [sys.executable, "bench/coldstart.py", "--runs=1", "--libs=ours", f"--out={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ours = json.loads(out.read_text())["libraries"]["ours"]
    assert ours["cost"] == [1.8e-05]  # the seed's text example, priced
    for phase in ("wall", "script", "import", "tokenizer", "rest"):
        assert ours[phase]["median"] > 0, phase
    assert "| budget_manager |" in done.stdout
