"""API keys: one spec format, each spec parsed once (the comma in ``K=projA,projB`` never makes
a key ``projB``), keys from a file or the environment, and specs refused when serve starts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from _service import ProcessServer, database

from budget_manager import InvalidInputError
from budget_manager.server.auth import ApiKeys, parse_spec, specs_from_env


def status(server: ProcessServer, project: str, key: str) -> int:
    answer = requests.get(
        f"{server.url}/v1/projects/{project}/users",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return answer.status_code


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("K", ("K", None)),
        ("K=projA,projB", ("K", frozenset({"projA", "projB"}))),
        ("K=projA|projB", ("K", frozenset({"projA", "projB"}))),
        ("  K = projA , my project ", ("K", frozenset({"projA", "my project"}))),
        ("sk-live_1.2~x=org/team", ("sk-live_1.2~x", frozenset({"org/team"}))),
    ],
)
def test_one_spec_names_one_key(spec: str, parsed: tuple[str, object]) -> None:
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "empty key"),
        ("=projA", "empty key"),
        ("k1 k2", "without spaces"),
        ("k1,k2", "without spaces, ','"),
        ("k1|k2=a", "without spaces, ','"),
        ("kéy", "printable ASCII"),
        ("abc==", "more than one '='"),
        ("K=", "empty project"),
        ("K=a,,b", "empty project"),
        ("K=a\x00b", "control characters"),
    ],
)
def test_a_spec_that_cannot_be_parsed_is_refused(spec: str, problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem):
        parse_spec(spec)


def test_a_key_given_twice_for_different_projects_is_refused() -> None:
    assert ApiKeys.parse(["K=a", "K=a"]).keys == {"K": frozenset({"a"})}
    with pytest.raises(InvalidInputError, match="given twice"):
        ApiKeys.parse(["K=a", "K=b"])


def test_the_environment_holds_one_spec_per_line() -> None:
    assert specs_from_env("K=projA,projB\n# comment\n\nL\n") == ["K=projA,projB", "L"]
    assert specs_from_env("k1, k2") == ["k1", "k2"]  # one line of plain keys
    assert specs_from_env("K=projA,projB") == ["K=projA,projB"]  # one spec, never split


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


def test_a_comma_in_a_spec_never_creates_a_key(store_url: str) -> None:
    server = ProcessServer(store_url, keys=("K=projA,projB",)).start()
    try:
        assert status(server, "projA", "K") == 200
        assert status(server, "projB", "K") == 200
        assert status(server, "projC", "K") == 403
        for project in ("projA", "projB", "projC"):
            assert status(server, project, "projB") == 401
    finally:
        server.stop()


def test_keys_reach_every_worker_process_intact(tmp_path: Path) -> None:
    server = ProcessServer(f"sqlite:///{tmp_path}/w.db", keys=("K=projA,projB",), workers=2)
    server.start()
    try:
        for _ in range(6):  # spread over the workers
            assert status(server, "projB", "K") == 200
            assert status(server, "projB", "projB") == 401
    finally:
        server.stop()


def test_keys_from_a_file_and_the_environment_stay_off_the_command_line(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# team keys\nfile-key=projA, projB\n\n  file-admin  \n")
    server = ProcessServer(
        f"sqlite:///{tmp_path}/k.db",
        args=("--api-keys-file", str(keys_file)),
        env={"BUDGET_MANAGER_API_KEYS": "env-key=projC\nenv-admin"},
    ).start()
    try:
        assert status(server, "projB", "file-key") == 200
        assert status(server, "projC", "file-key") == 403
        assert status(server, "projC", "env-key") == 200
        assert status(server, "projA", "env-key") == 403
        assert status(server, "any", "file-admin") == 200
        assert status(server, "any", "env-admin") == 200
        assert status(server, "projA", "projB") == 401
        assert server.proc is not None
        command_line = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        assert b"file-key" not in command_line and b"env-key" not in command_line
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("options", "file_text", "message"),
    [
        (["--api-key", "k1,k2"], None, "give each key its own spec"),
        (["--api-key", "K="], None, "empty project"),
        ([], "good\nbad key\n", "without spaces"),
        (["--api-keys-file", "/nonexistent/keys"], None, "cannot read API keys file"),
    ],
)
def test_serve_refuses_a_bad_spec_at_start(
    tmp_path: Path, options: list[str], file_text: str | None, message: str
) -> None:
    if file_text is not None:
        (tmp_path / "keys").write_text(file_text)
        options = [*options, "--api-keys-file", str(tmp_path / "keys")]
    run = subprocess.run(
        [sys.executable, "-m", "budget_manager.cli", "serve", "--port", "0", *options],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "serving" not in run.stderr
    assert not (tmp_path / "budgets.db").exists()
