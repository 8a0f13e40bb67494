import json
import math
import time

import pytest
from conftest import utc

from budget_manager import (
    BudgetManager,
    InvalidBudgetError,
    InvalidInputError,
    MissingUsageError,
    UnknownDurationError,
    UnknownModelError,
    UnknownUserError,
    completion_cost,
    cost_per_token,
    token_counter,
)

RESPONSE = {
    "id": "x",
    "model": "gpt-3.5-turbo",
    "choices": [{"message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
}


@pytest.fixture
def manager(clock):
    return BudgetManager("test_project", clock=clock)


def test_create_budget_returns_the_record_in_litellm_shape(manager, clock):
    record = manager.create_budget(total_budget=10, user="u1", duration="monthly")
    assert record["total_budget"] == 10 and isinstance(record["total_budget"], float)
    assert record["duration"] == 28  # LiteLLM's day count for "monthly"
    assert record["created_at"] == record["last_updated_at"] == clock.now
    assert record["current_cost"] == 0 and record["model_cost"] == {}
    plain = manager.create_budget(total_budget=5, user="u2")
    assert "duration" not in plain and plain["total_budget"] == 5


def test_created_at_defaults_to_the_time_of_each_call(tmp_path):
    manager = BudgetManager("p", path=tmp_path / "b.json")
    first = manager.create_budget(1, "a", duration="daily")["created_at"]
    time.sleep(0.02)
    second = manager.create_budget(1, "b", duration="daily")["created_at"]
    assert second > first and abs(second - time.time()) < 5


def test_create_budget_replaces_an_existing_one(manager):
    manager.create_budget(10, "u")
    manager.update_cost(user="u", completion_obj=RESPONSE)
    manager.create_budget(20, "u", duration="daily")
    assert manager.get_total_budget("u") == 20
    assert manager.get_current_cost("u") == 0


def test_update_cost_from_a_response(manager):
    manager.create_budget(10, "u")
    result = manager.update_cost(completion_obj=RESPONSE, user="u")
    expected = sum(cost_per_token("gpt-3.5-turbo", 20, 10))
    assert result["user"]["current_cost"] == pytest.approx(expected, rel=1e-12)
    assert manager.get_current_cost("u") == pytest.approx(expected, rel=1e-12)
    assert manager.get_model_cost("u") == {"gpt-3.5-turbo": pytest.approx(expected, rel=1e-12)}


def test_update_cost_from_text_prices_input_as_a_message_and_output_as_text(manager):
    manager.create_budget(10, "u", duration="daily")
    manager.update_cost(
        user="u", model="gpt-3.5-turbo", input_text="hello world", output_text="it's sunny"
    )
    prompt_tokens = token_counter(
        "gpt-3.5-turbo", messages=[{"role": "user", "content": "hello world"}]
    )
    completion_tokens = token_counter("gpt-3.5-turbo", text="it's sunny")
    assert (prompt_tokens, completion_tokens) == (9, 3)
    assert manager.get_current_cost("u") == pytest.approx(
        sum(cost_per_token("gpt-3.5-turbo", 9, 3))
    )


def test_empty_text_is_valid(manager):
    manager.create_budget(10, "u")
    manager.update_cost(user="u", model="gpt-4o", input_text="", output_text="")
    assert manager.get_current_cost("u") == pytest.approx(cost_per_token("gpt-4o", 7, 0)[0])


def test_costs_accumulate_per_model(manager):
    manager.create_budget(10, "u")
    manager.update_cost(user="u", completion_obj=RESPONSE)
    manager.update_cost(user="u", completion_obj={**RESPONSE, "model": "gpt-4o"})
    manager.update_cost(user="u", completion_obj=RESPONSE)
    by_model = manager.get_model_cost("u")
    assert set(by_model) == {"gpt-3.5-turbo", "gpt-4o"}
    assert manager.get_current_cost("u") == pytest.approx(sum(by_model.values()), rel=1e-12)


def test_projected_cost_adds_the_prompt_cost(manager):
    manager.create_budget(10, "u")
    manager.update_cost(user="u", completion_obj=RESPONSE)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
        },
    ]
    tokens = token_counter("gpt-4o", messages=messages)
    expected = manager.get_current_cost("u") + cost_per_token("gpt-4o", tokens, 0)[0]
    assert manager.projected_cost("gpt-4o", messages, "u") == pytest.approx(expected, rel=1e-12)


def test_users_validity_and_reset(manager):
    assert manager.get_users() == [] and not manager.is_valid_user("u")
    manager.create_budget(10, "u")
    manager.create_budget(10, "v")
    assert manager.get_users() == ["u", "v"] and manager.is_valid_user("u")
    manager.update_cost(user="u", completion_obj=RESPONSE)
    result = manager.reset_cost("u")
    assert result["user"]["current_cost"] == 0 and result["user"]["model_cost"] == {}
    assert manager.get_current_cost("u") == 0 and manager.get_model_cost("u") == {}


def test_save_data(manager):
    manager.create_budget(10, "u")
    assert manager.save_data() == {"status": "success"}
    saved = json.loads(manager.store.path.read_text())
    assert saved["u"]["total_budget"] == 10


def test_an_ended_period_reads_as_reset_without_any_call(manager, clock):
    manager.create_budget(10, "u", duration="daily")
    manager.update_cost(user="u", completion_obj=RESPONSE)
    clock.advance(86399)
    assert manager.get_current_cost("u") > 0
    clock.advance(1)
    assert manager.get_current_cost("u") == 0 and manager.get_model_cost("u") == {}
    manager.update_cost(user="u", completion_obj=RESPONSE)
    assert manager.get_current_cost("u") == pytest.approx(completion_cost(RESPONSE))


def test_reset_on_duration_and_update_budget_all_users(manager, clock):
    manager.create_budget(10, "d", duration="daily")
    manager.create_budget(10, "w", duration="weekly")
    manager.create_budget(10, "n")
    for user in ("d", "w", "n"):
        manager.update_cost(user=user, completion_obj=RESPONSE)
    clock.advance(2 * 86400 + 5)
    manager.reset_on_duration("n")  # no duration: a no-op, not an error
    manager.update_budget_all_users()
    records = manager.user_dict
    assert records["d"]["current_cost"] == 0
    assert records["d"]["last_updated_at"] == utc("2024-02-02T09:00:00")  # on the boundary
    assert records["w"]["current_cost"] > 0 and records["n"]["current_cost"] > 0


def test_late_checks_do_not_shift_boundaries(manager, clock):
    manager.create_budget(10, "u", duration="weekly")
    clock.advance(7 * 86400 + 3 * 3600)  # checked three hours late
    manager.reset_on_duration("u")
    assert manager.get_reset_at("u") == utc("2024-01-31T09:00:00") + 14 * 86400


def test_remaining_budget(manager):
    manager.create_budget(1, "u")
    manager.update_cost(user="u", completion_obj=RESPONSE)
    assert manager.get_remaining_budget("u") == pytest.approx(1 - completion_cost(RESPONSE))


# -- bad input: a clear exception, nothing changed --------------------------------------------
@pytest.mark.parametrize(
    "method, args",
    [
        ("get_total_budget", ()),
        ("get_current_cost", ()),
        ("get_model_cost", ()),
        ("reset_cost", ()),
        ("reset_on_duration", ()),
        ("projected_cost", ("gpt-4o", [{"role": "user", "content": "x"}])),
    ],
)
def test_unknown_users_raise_a_keyerror_subclass(manager, method, args):
    with pytest.raises(UnknownUserError) as info:
        if method == "projected_cost":
            manager.projected_cost(*args, user="ghost")
        else:
            getattr(manager, method)("ghost", *args)
    assert isinstance(info.value, KeyError) and "ghost" in str(info.value)
    with pytest.raises(KeyError):
        manager.update_cost(user="ghost", completion_obj=RESPONSE)
    assert manager.get_users() == []


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, "10", None, True])
def test_bad_budgets_are_rejected(manager, bad):
    with pytest.raises(InvalidBudgetError, match="total_budget"):
        manager.create_budget(total_budget=bad, user="u")
    assert not manager.is_valid_user("u")


def test_unknown_duration_is_rejected(manager):
    with pytest.raises(UnknownDurationError, match="fortnightly"):
        manager.create_budget(10, "u", duration="fortnightly")
    assert not manager.is_valid_user("u")


@pytest.mark.parametrize("bad", [math.nan, "yesterday", 1e300])
def test_bad_created_at_is_rejected(manager, bad):
    with pytest.raises(InvalidInputError, match=r"created_at|range"):
        manager.create_budget(10, "u", duration="daily", created_at=bad)
    assert not manager.is_valid_user("u")


def test_update_cost_needs_a_response_or_text(manager):
    manager.create_budget(10, "u")
    with pytest.raises(InvalidInputError, match="completion_obj"):
        manager.update_cost(user="u")
    with pytest.raises(InvalidInputError, match="input_text"):
        manager.update_cost(user="u", model="gpt-4o")
    with pytest.raises(MissingUsageError):
        manager.update_cost(user="u", completion_obj={"model": "gpt-4o", "choices": []})
    with pytest.raises(UnknownModelError, match="register_model"):
        manager.update_cost(user="u", model="no-such-model", input_text="a", output_text="b")
    with pytest.raises(InvalidInputError):
        manager.update_cost(
            user="u",
            completion_obj={
                "model": "gpt-4o",
                "usage": {"prompt_tokens": -5, "completion_tokens": 1},
            },
        )
    assert manager.get_current_cost("u") == 0 and manager.get_model_cost("u") == {}


def test_bad_users_and_projects(manager, tmp_path):
    with pytest.raises(InvalidInputError):
        manager.create_budget(10, user=123)  # type: ignore[arg-type]
    assert manager.is_valid_user(123) is False  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        BudgetManager("")
    with pytest.raises(InvalidInputError):
        BudgetManager("p", client_type="cloud")  # type: ignore[arg-type]


def test_returned_records_are_copies(manager):
    record = manager.create_budget(10, "u")
    record["total_budget"] = 999
    manager.user_dict["u"]["current_cost"] = 5
    assert manager.get_total_budget("u") == 10 and manager.get_current_cost("u") == 0
