"""Files and figures against LiteLLM's own BudgetManager, run in the same process."""

import json
import threading
import time
from pathlib import Path

import litellm
import pytest

from budget_manager import BudgetManager, completion_cost

RESPONSES = [
    {
        "model": "gpt-4o",
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
    },
    {
        "model": "gpt-3.5-turbo",
        "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
    },
    {
        "model": "claude-sonnet-4-5",
        "usage": {"prompt_tokens": 5000, "completion_tokens": 700, "total_tokens": 5700},
    },
]


@pytest.fixture(autouse=True)
def _join_litellm_save_threads():
    """LiteLLM saves from background threads that write to the *current* folder; let them finish
    inside this test's folder, not the next test's."""
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=10)


def _settle():
    for thread in threading.enumerate():
        if (
            thread is not threading.current_thread()
            and thread.name.startswith("Thread-")
            and not thread.daemon
        ):
            thread.join(timeout=10)


def litellm_response(data):
    return litellm.ModelResponse(**data)


def drive(manager, make_response):
    manager.create_budget(total_budget=10, user="daily", duration="daily", created_at=time.time())
    manager.create_budget(
        total_budget=25.5, user="monthly", duration="monthly", created_at=time.time()
    )
    manager.create_budget(total_budget=3, user="forever")
    for user in ("daily", "monthly", "forever"):
        for data in RESPONSES:
            manager.update_cost(user=user, completion_obj=make_response(data))
    manager.reset_cost("forever")
    manager.update_cost(user="forever", completion_obj=make_response(RESPONSES[0]))
    manager.save_data()


def test_same_inputs_same_figures_as_litellm(tmp_path):
    theirs = litellm.BudgetManager(project_name="p")
    drive(theirs, litellm_response)
    ours = BudgetManager("p", path=tmp_path / "ours.json")
    drive(ours, dict)
    assert ours.get_users() == theirs.get_users()
    for user in ours.get_users():
        assert ours.get_total_budget(user) == theirs.get_total_budget(user)
        assert ours.get_current_cost(user) == pytest.approx(theirs.get_current_cost(user), rel=1e-9)
        assert ours.get_model_cost(user) == pytest.approx(theirs.get_model_cost(user), rel=1e-9)
    for data in RESPONSES:
        assert completion_cost(data) == pytest.approx(
            litellm.completion_cost(litellm_response(data)), rel=1e-9
        )


def test_a_litellm_user_cost_file_loads_here():
    theirs = litellm.BudgetManager(project_name="p")
    drive(theirs, litellm_response)
    _settle()
    theirs.save_data()
    written = json.loads(Path("user_cost.json").read_text())
    ours = BudgetManager("p", path="user_cost.json")
    assert ours.get_users() == list(written)
    for user, record in written.items():
        assert ours.get_total_budget(user) == record["total_budget"]
        assert ours.get_current_cost(user) == pytest.approx(
            record.get("current_cost", 0), rel=1e-12
        )
        assert ours.get_model_cost(user) == pytest.approx(record.get("model_cost", {}), rel=1e-12)
    assert ours.store.get("monthly").period.name == "monthly"  # LiteLLM's 28 days read as monthly
    ours.update_cost(user="daily", completion_obj=RESPONSES[1])
    assert ours.get_current_cost("daily") == pytest.approx(
        written["daily"]["current_cost"] + completion_cost(RESPONSES[1]), rel=1e-12
    )


def test_a_file_written_here_loads_in_litellm():
    ours = BudgetManager("p", path="user_cost.json")
    drive(ours, dict)
    ours.create_budget(total_budget=1, user="spans", duration="12h")
    ours.save_data()
    theirs = litellm.BudgetManager(project_name="p")
    assert theirs.get_users() == ours.get_users()
    for user in ("daily", "monthly", "forever"):
        assert theirs.get_total_budget(user) == ours.get_total_budget(user)
        assert theirs.get_current_cost(user) == pytest.approx(
            ours.get_current_cost(user), rel=1e-12
        )
        assert theirs.get_model_cost(user) == pytest.approx(ours.get_model_cost(user), rel=1e-12)
    assert theirs.user_dict["spans"]["duration"] == 0.5
    theirs.update_budget_all_users()  # LiteLLM's own reset logic runs on our records
    theirs.update_cost(user="forever", completion_obj=litellm_response(RESPONSES[1]))
    _settle()
    theirs.save_data()
    again = BudgetManager("p", path="user_cost.json")
    assert again.get_current_cost("forever") == pytest.approx(
        theirs.get_current_cost("forever"), rel=1e-12
    )


def test_switching_the_import_keeps_litellms_budgets(caplog):
    """The seed's ``if not is_valid_user(...): create_budget(...)`` pattern, run by a LiteLLM user
    who only changed the import, must not start their spend again from zero."""
    theirs = litellm.BudgetManager(project_name="test_project")
    drive(theirs, litellm_response)
    _settle()
    theirs.save_data()
    litellm_file = Path("user_cost.json")
    before = litellm_file.read_bytes()
    written = json.loads(before)

    with caplog.at_level("WARNING", logger="budget_manager"):
        ours = BudgetManager(project_name="test_project")
    for user in ("daily", "monthly", "forever"):
        assert ours.is_valid_user(user)
        assert ours.get_current_cost(user) == pytest.approx(
            written[user]["current_cost"], rel=1e-12
        )
    if not ours.is_valid_user("daily"):  # the seed's pattern: must not run
        ours.create_budget(total_budget=10, user="daily", duration="daily")
    ours.update_cost(user="daily", completion_obj=RESPONSES[1])
    ours.save_data()

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "user_cost.json" in warnings[0] and "user_cost_test_project.json" in warnings[0]
    assert litellm_file.read_bytes() == before  # LiteLLM's file is left as it was
    own = json.loads(Path("user_cost_test_project.json").read_text())
    assert own["daily"]["current_cost"] == pytest.approx(
        written["daily"]["current_cost"] + completion_cost(RESPONSES[1]), rel=1e-12
    )

    caplog.clear()
    with caplog.at_level("WARNING", logger="budget_manager"):
        again = BudgetManager(project_name="test_project")  # has its own file now: no adoption
    assert not caplog.records
    assert again.get_current_cost("daily") == ours.get_current_cost("daily")
