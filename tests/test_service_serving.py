"""How the service runs: deadlines for headers and bodies, a cap on connections, tested with
real slow client sockets on 127.0.0.1; and ``budget-manager serve``, which says "serving" only
once it listens and otherwise fails with one line on stderr."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from _service import ThreadServer, free_port

from budget_manager.cli import command_parser
from budget_manager.server import serving

PROTOCOLS = [serving.H11Guarded, serving.PROTOCOL]


@pytest.fixture(params=PROTOCOLS, ids=lambda p: p.__name__)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ThreadServer]:
    server = ThreadServer(
        store_url=f"sqlite:///{tmp_path}/budgets.db",
        api_keys=[],
        body_timeout=0.5,
        serve_options={
            "header_timeout": 0.5,
            "keep_alive_timeout": 1,
            "max_connections": 4,
            "protocol": request.param,
        },
    )
    yield server.start()
    server.stop()


def connect(service: ThreadServer, sent: bytes = b"") -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    conn.sendall(sent)
    return conn


def answer_until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends before it closes the connection (10 s at most)."""
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    conn.close()
    return received


def status_and_body(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"POST /v1/projects/p/users/u/cost HTTP/1.1\r\nHost: x\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
    ],
    ids=["silent", "headers-unfinished", "header-line-unfinished"],
)
def test_slow_headers_get_408_and_the_connection_closed(service: ThreadServer, sent: bytes) -> None:
    status, body = status_and_body(answer_until_closed(connect(service, sent)))
    assert status == 408 and body["field"] == "headers"


def test_a_slow_body_gets_408_and_changes_nothing(service: ThreadServer) -> None:
    url = service.url + "/v1/projects/p/users/u"
    requests.put(url, json={"total_budget": 5}, timeout=10).raise_for_status()
    conn = connect(
        service,
        b"POST /v1/projects/p/users/u/cost HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n" + b'{"cost": ',
    )
    status, body = status_and_body(answer_until_closed(conn))
    assert status == 408 and body["field"] == "body"
    assert requests.get(url, timeout=10).json()["data"]["current_cost"] == 0


def test_a_kept_alive_connection_gets_the_header_deadline_again(service: ThreadServer) -> None:
    conn = connect(service, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = conn.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    conn.sendall(b"GET /heal")  # the next request starts, and stalls
    status, body = status_and_body(answer_until_closed(conn))
    assert status == 408 and body["field"] == "headers"


def test_an_idle_kept_alive_connection_is_closed(service: ThreadServer) -> None:
    conn = connect(service, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer_until_closed(conn).startswith(b"HTTP/1.1 200")  # then closed, unasked


def test_connections_beyond_the_cap_get_503(service: ThreadServer) -> None:
    session = requests.Session()  # keep-alive: this is one connection throughout
    assert session.get(service.url + "/health", timeout=10).status_code == 200
    idle = [connect(service) for _ in range(3)]  # four connections open: the cap
    status, body = status_and_body(answer_until_closed(connect(service)))
    assert status == 503 and body["field"] == "connections"
    assert session.get(service.url + "/health", timeout=10).status_code == 200
    for conn in idle:
        conn.close()
    time.sleep(0.2)  # the server sees them close
    assert requests.get(service.url + "/health", timeout=10).status_code == 200


# -- budget-manager serve -------------------------------------------------------------------------
def serve(*options: str, cwd: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "budget_manager.cli", "serve", *options]
    if code is not None:
        command = [sys.executable, "-c", code, *options]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, cwd=cwd, env={"PATH": "/usr/bin:/bin"}
    )


def assert_one_line(run: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert run.returncode == code, run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("budget-manager: "), run.stderr
    assert "Traceback" not in run.stderr and "serving" not in run.stderr
    for word in words:
        assert word in run.stderr, run.stderr


def test_serve_fails_clearly_on_a_database_that_does_not_exist(tmp_path: Path) -> None:
    from _service import require_pg

    require_pg()
    url = "postgresql://postgres@127.0.0.1:5432/bm_no_such_database"
    run = serve("--store", url, "--port", "0", cwd=tmp_path)
    assert_one_line(run, 1, url, 'database "bm_no_such_database" does not exist')


def test_serve_fails_clearly_on_an_unreachable_database(tmp_path: Path) -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/db"
    run = serve("--store", url, "--port", "0", cwd=tmp_path)
    assert_one_line(run, 1, "postgresql://postgres:***@127.0.0.1", "refused")
    assert "secret" not in run.stderr


def test_serve_fails_clearly_on_a_missing_folder(tmp_path: Path) -> None:
    run = serve("--store", f"sqlite:///{tmp_path}/missing/b.db", "--port", "0", cwd=tmp_path)
    assert_one_line(run, 1, f"{tmp_path}/missing", "does not exist")


def test_serve_fails_clearly_on_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = serve("--store", f"sqlite:///{tmp_path}/b.db", "--port", str(port), cwd=tmp_path)
    assert_one_line(run, 1, f"127.0.0.1:{port}", "address already in use")


def test_serve_fails_clearly_without_the_server_extra(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['uvicorn'] = None\n"
        "from budget_manager.cli import main\n"
        "sys.exit(main(['serve', *sys.argv[1:]]))\n"
    )
    run = serve("--port", "0", cwd=tmp_path, code=code)
    assert_one_line(run, 1, "pip install 'budget-manager[server]'")


def test_serve_says_serving_once_it_listens(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "budget_manager.cli", "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline(), proc.stderr.readline()]
        assert "WARNING: no API keys" in lines[0] and "serving" in lines[1]
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_every_option_of_serve_states_its_default() -> None:
    serve_parser = command_parser("serve")
    options = [a for a in serve_parser._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 15
    for action in options:
        assert action.help and "default" in action.help, action.option_strings
