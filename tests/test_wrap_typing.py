"""wrap() keeps the SDK clients' types for type checkers: mypy (strict, the project's settings)
checks the files in tests/typing/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TYPING = Path(__file__).resolve().parent / "typing"


def test_mypy_sees_the_sdk_types_through_wrap_and_refuses_mismatched_managers():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--no-error-summary",
            str(TYPING / "wrap_keeps_types.py"),
            str(TYPING / "wrap_mismatch.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if "wrap_keeps_types" in e], result.stdout
    lines = sorted(int(re.search(r"\.py:(\d+):", e).group(1)) for e in errors)  # type: ignore[union-attr]
    assert lines == [7, 8, 9], result.stdout
    assert all('No overload variant of "wrap"' in e for e in errors), result.stdout
