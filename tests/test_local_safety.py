"""The local JSON store refuses damage, keeps projects apart, and names stay within one rule."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import budget_manager
from budget_manager import (
    BudgetManager,
    CorruptStoreError,
    InvalidBudgetError,
    InvalidInputError,
    completion,
)
from budget_manager.stores import JsonFileStore, default_path


def _saved_project(name: str = "p", users: int = 10) -> BudgetManager:
    manager = BudgetManager(name)
    for i in range(users):
        manager.create_budget(total_budget=5, user=f"u{i}")
        manager.update_cost(user=f"u{i}", model="gpt-4o", input_text="hi", output_text="there")
    manager.save_data()
    manager.close()
    return manager


@pytest.mark.parametrize("content", [b"", b"   \n\t\n"])
def test_an_empty_budget_file_is_refused_and_left_untouched(content):
    _saved_project()
    path = default_path("p")
    path.write_bytes(content)  # the damage: truncated to nothing
    with pytest.raises(CorruptStoreError) as caught:
        BudgetManager("p")
    assert "start afresh" in str(caught.value) and str(path) in str(caught.value)
    assert path.read_bytes() == content
    with pytest.raises(CorruptStoreError):
        JsonFileStore(path)  # every way in refuses it
    assert path.read_bytes() == content


def test_projects_whose_names_once_collided_get_files_of_their_own():
    a, b = "tenant*%$$A", "tenant%~@=@A"  # shared user_cost_tenant_A-4abcd0c8.json before
    assert default_path(a) != default_path(b)
    first = BudgetManager(a)
    second = BudgetManager(b)
    first.create_budget(total_budget=10, user="alice")
    assert not second.is_valid_user("alice")
    second.create_budget(total_budget=3, user="alice")
    first.update_cost(user="alice", model="gpt-4o", input_text="a", output_text="b")
    second.reset_cost("alice")
    assert first.get_total_budget("alice") == 10 and first.get_current_cost("alice") > 0
    assert second.get_total_budget("alice") == 3 and second.get_current_cost("alice") == 0


def test_file_names_carry_128_bits_of_the_projects_hash():
    name = default_path("team/a b").name
    assert name.startswith("user_cost_team_a_b-") and name.endswith(".json")
    assert len(name.removeprefix("user_cost_team_a_b-").removesuffix(".json")) == 32
    assert default_path("plain-name_1.x") == Path("user_cost_plain-name_1.x.json")


def test_an_earlier_releases_file_name_is_adopted():
    import hashlib

    project = "team/a"
    earlier = Path(f"user_cost_team_a-{hashlib.sha256(project.encode()).hexdigest()[:8]}.json")
    earlier.write_text(json.dumps({"bob": {"total_budget": 7, "current_cost": 1.5}}))
    manager = BudgetManager(project)
    assert manager.get_current_cost("bob") == 1.5
    assert json.loads(earlier.read_text())["bob"]["current_cost"] == 1.5


def test_a_project_name_too_long_for_a_file_name_is_an_input_error():
    with pytest.raises(InvalidInputError, match="too long"):
        BudgetManager("x" * 250)
    with pytest.raises(InvalidInputError, match="too long"):
        BudgetManager("p", path="y" * 300 + ".json")
    assert os.listdir(".") == []  # and nothing was created


def test_cleaning_up_leaves_other_projects_temporaries_alone():
    own = [
        "user_cost_a.json.123.0123abcd.tmp",
        "user_cost_a.json.journal.123.0123abcd.tmp",
    ]
    others = [
        "user_cost_a.jsonx.json.123.0123abcd.tmp",  # project "a.jsonx", mid-compaction
        "user_cost_a.json-b.json.journal.77.deadbeef.tmp",  # project "a.json-b"
        "user_cost_a.json.notes.tmp",  # not ours to judge
    ]
    for name in own + others:
        Path(name).write_text("{}")
    BudgetManager("a").create_budget(total_budget=1, user="u")
    assert not any(Path(name).exists() for name in own)
    assert all(Path(name).read_text() == "{}" for name in others)


@pytest.mark.parametrize("bad", ["a\x00b", "tab\there", "line\nbreak", "\x7f", "\x85", ""])
def test_control_characters_and_empty_names_are_refused_everywhere(bad, tmp_path):
    manager = BudgetManager("p")
    with pytest.raises(InvalidInputError):
        manager.create_budget(total_budget=1, user=bad)
    with pytest.raises(InvalidInputError):
        manager.update_cost(user=bad, model="gpt-4o", input_text="a", output_text="b")
    with pytest.raises(InvalidInputError):
        manager.get_current_cost(bad)
    with pytest.raises(InvalidInputError):
        BudgetManager(bad)
    with pytest.raises(InvalidInputError):
        JsonFileStore(tmp_path / "direct.json").put(bad, manager.store.get("x") or _record())
    assert manager.get_users() == []


def _record():
    from budget_manager.money import to_money
    from budget_manager.records import new_record

    return new_record(to_money(1), None, 0.0, None)


@pytest.mark.parametrize("user", ["org/user", "50%", "..", "a b", "ü→✓", "🙂", "../../etc/passwd"])
def test_any_other_name_round_trips(user):
    manager = BudgetManager("p")
    manager.create_budget(total_budget=2, user=user)
    manager.update_cost(user=user, model="gpt-4o", input_text="a", output_text="b")
    manager.save_data()
    assert BudgetManager("p").get_users() == [user]
    assert BudgetManager("p").get_current_cost(user) == manager.get_current_cost(user) > 0


@pytest.mark.parametrize("cap", ["0.5", object(), [1], True, float("nan")])
def test_a_max_budget_that_is_not_a_number_is_named_at_the_next_call(cap, stub_url):
    budget_manager.max_budget = cap
    with pytest.raises(InvalidBudgetError, match="max_budget"):
        completion(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert budget_manager._current_cost == 0.0
