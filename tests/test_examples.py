"""Every example runs as a script against a real HTTP server on loopback."""

import json
import os
import subprocess
import sys

import pytest
from conftest import EXAMPLES


def run(name: str, cwd, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quickstart_spends_then_is_refused(stub, tmp_path):
    out = run("quickstart.py", tmp_path, OPENAI_BASE_URL=stub.url).splitlines()
    assert float(out[0]) > 0.001
    assert out[1].startswith("refused: Budget has been exceeded!")


def test_per_user_budget(stub, tmp_path):
    out = run("per_user_budget.py", tmp_path, OPENAI_BASE_URL=stub.url)
    assert "user 1234 has spent $0.0000" in out
    assert (tmp_path / "user_cost_test_project.json").exists()
    run("per_user_budget.py", tmp_path, OPENAI_BASE_URL=stub.url)  # the user now exists


def test_text_input_output(tmp_path):
    assert float(run("text_input_output.py", tmp_path)) == pytest.approx(1.8e-05)


def test_durations(tmp_path):
    out = run("durations.py", tmp_path)
    assert "2024-02-29T09:00:00: spent 0.0, next reset 2024-03-31 09:00" in out
    assert "2024-02-28T08:59:59: spent 4e-05, next reset 2024-02-29 09:00" in out


def test_main_example_with_its_own_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "main.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "alice is out of budget" in result.stdout
    assert "global cap reached, call refused" in result.stdout
    assert "saved: {'status': 'success'}" in result.stdout


def test_main_example_against_a_given_endpoint(stub, tmp_path):
    out = run("main.py", tmp_path, OPENAI_BASE_URL=stub.url)
    assert f"endpoint: {stub.url}" in out


def test_async_app_never_sends_past_a_budget(stub, tmp_path):
    before = stub.requests
    out = run("async_app.py", tmp_path, OPENAI_BASE_URL=stub.url).splitlines()
    sent, requests = int(out[0].split()[0]), int(out[0].split(",")[1].split()[0])
    assert requests == 60 and 0 < sent < 60 and stub.requests - before == sent
    spent = {line.split()[0]: line.split()[2:5:2] for line in out[1:]}
    for name, (used, budget) in spent.items():
        assert 0 < float(used.lstrip("$")) <= float(budget.lstrip("$")), name


def test_history_and_alerts(tmp_path):
    out = run("history_alerts.py", tmp_path).splitlines()
    assert out[:3] == [
        "ALERT ann reached 50%: $0.0225 of $0.045",
        "ALERT ann reached 80%: $0.0360 of $0.045",
        "ALERT ann reached 100%: $0.0450 of $0.045",
    ]
    assert out[3] == "51 events; last: charge gpt-4o-mini {'prompt': 4000, 'completion': 500}"
    assert out[4:] == ["by model: {'gpt-4o-mini': 0.045}", "by user: {'ann': 0.045}"]
    assert len(list((tmp_path / "history_demo.json.history").glob("*.jsonl"))) == 1


def test_dashboard_fills_a_service_and_names_the_page(tmp_path):
    from _service import ThreadServer

    server = ThreadServer(store_url=f"sqlite:///{tmp_path}/b.db", api_keys=["example-key"]).start()
    try:
        out = run(
            "dashboard.py",
            tmp_path,
            BUDGET_MANAGER_API_BASE=server.url,
            BUDGET_MANAGER_API_KEY="example-key",
        ).splitlines()
    finally:
        server.stop()
    assert out[0] == f"open {server.url}/dashboard?project=demo and enter the API key"
    spent, held = out[1].removeprefix("alice has spent $").split(", holding ")
    assert float(spent) > 0 and float(held) == 0.5


def test_openai_sdk_example_settles_and_refuses_before_sending(stub, tmp_path):
    before = stub.requests
    out = run("openai_sdk.py", tmp_path, OPENAI_BASE_URL=stub.url).splitlines()
    assert out[0].startswith("Hello!") and out[1].startswith("Hello!")
    spent, budget = (float(word.lstrip("$")) for word in out[2].split()[2:5:2])
    assert 0 < spent <= budget == 0.001
    assert out[3].startswith("refused before sending: budget 'ann'")
    assert stub.requests - before == 2


def test_anthropic_sdk_example_never_sends_past_a_budget(stub, tmp_path):
    before = stub.requests
    out = run("anthropic_sdk.py", tmp_path, OPENAI_BASE_URL=stub.url).splitlines()
    sent, requests = int(out[0].split()[0]), int(out[0].split(",")[1].split()[0])
    assert requests == 30 and 0 < sent < 30 and stub.requests - before == sent + 1
    assert out[1].startswith("Hello!")
    for line in out[2:]:
        spent, budget = (float(word.lstrip("$")) for word in line.split()[2:5:2])
        assert 0 < spent <= budget


def test_operations_matches_what_the_command_line_shows(tmp_path):
    out = run("operations.py", tmp_path).splitlines()
    assert out[:2] == [
        "alice: spent 0.0125 of 10, 1 open hold(s) of 2, 7.9875 left",
        "team: spent 0.0125 of 100, 1 open hold(s) of 2, 97.9875 left",
    ]
    assert out[2:] == [
        "released: released",
        "ended periods reset: 0",
        "by model: {'gpt-4o': 0.0125}",
    ]
    shown = subprocess.run(
        [sys.executable, "-m", "budget_manager.cli", "users", "--json"],
        cwd=tmp_path,
        env={
            **os.environ,
            "BUDGET_MANAGER_STORE": "sqlite:///ops.db",
            "BUDGET_MANAGER_PROJECT": "ops",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    users = {u["user"]: u for u in json.loads(shown.stdout)}
    assert (users["alice"]["remaining"], users["team"]["spent"]) == ("9.9875", "0.0125")


def test_litellm_callback_and_wrappers(stub, tmp_path):
    before = stub.requests
    out = run("litellm_callback.py", tmp_path, OPENAI_BASE_URL=stub.url)
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert float(lines["callback"].split("$")[1]) > 0
    assert lines["wrapper"].startswith("bob spent $0.0000")
    assert "bob's call 2 refused, nothing sent" in out
    refused_at = int(out.split("cid's call ")[1].split()[0])
    assert 1 < refused_at < 10
    spent = {who: float(text.split("$")[1].split()[0]) for who, text in lines.items()}
    assert 0 < spent["async callback"] <= 0.0001 and 0 < spent["wrapper"] <= 0.00005
    assert 0 < float(lines["async wrapper"].split("$")[1].split()[0]) <= 0.0001
    # ann 1, bob 1 (the second refused), cid until refused, dan 1
    assert stub.requests - before == 1 + 1 + (refused_at - 1) + 1
