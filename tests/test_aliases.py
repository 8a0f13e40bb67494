"""Aliases in the price table (LiteLLM's ``{"alias_of": ...}`` rows) and what an unknown model's
error suggests. The bundled aliases are compared with LiteLLM in test_costs_vs_litellm.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from budget_manager import (
    InvalidInputError,
    UnknownModelError,
    completion_cost,
    cost_per_token,
    load_cost_table,
    model_cost,
    register_model,
)
from budget_manager.costs.table import TABLE

HOUSE = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "mode": "chat"}


@pytest.fixture(autouse=True)
def table():
    yield TABLE
    TABLE.reset()


def write_table(path: Path, models: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"sample_spec": {"mode": "chat"}, **models}))
    return path


def response(model: str) -> dict[str, Any]:
    usage = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
    return {"model": model, "usage": usage}


def test_a_bundled_alias_prices_as_its_target():
    alias, target = "bedrock/claude-opus-latest", "global.anthropic.claude-opus-5-5"
    assert cost_per_token(alias, 1000, 100) == cost_per_token(target, 1000, 100)
    assert completion_cost(response(alias)) == completion_cost(response(target)) > 0
    assert model_cost[alias] == model_cost[target]
    assert "alias_of" not in model_cost[alias]
    assert alias in model_cost and alias in list(model_cost)
    assert cost_per_token("deepseek/deepseek-pro-latest", 10, 10) > (0, 0)


def test_a_provider_prefix_resolves_to_an_alias_then_its_target():
    assert cost_per_token("litellm_proxy/bedrock/claude-opus-latest", 10, 10) == cost_per_token(
        "global.anthropic.claude-opus-5-5", 10, 10
    )


def test_chains_of_aliases_resolve(tmp_path):
    source = write_table(
        tmp_path / "t.json",
        {
            "house": HOUSE,
            "house-latest": {"alias_of": "house"},
            "best": {"alias_of": "house-latest"},
        },
    )
    assert load_cost_table(source) == 3
    assert (
        cost_per_token("best", 1000, 1000)
        == cost_per_token("house", 1000, 1000)
        == (
            0.001,
            0.002,
        )
    )
    assert model_cost["best"] == model_cost["house"]


@pytest.mark.parametrize(
    "models, problem",
    [
        (
            {"house": HOUSE, "a": {"alias_of": "gone"}},
            "alias 'a' leads to 'gone', which has no entry",
        ),
        (
            {"house": HOUSE, "a": {"alias_of": "b"}, "b": {"alias_of": "gone"}},
            "alias 'a' leads to 'gone'",
        ),
        ({"house": HOUSE, "a": {"alias_of": "b"}, "b": {"alias_of": "a"}}, "loop of aliases"),
        ({"house": HOUSE, "a": {"alias_of": "a"}}, "a.alias_of must name another model"),
        ({"house": HOUSE, "a": {"alias_of": 7}}, "a.alias_of must name another model"),
        ({"a": {"alias_of": "b"}, "b": {"alias_of": "c"}}, "loop|no entry|prices no models"),
    ],
    ids=["missing", "missing-through-chain", "loop", "itself", "not-a-name", "only-aliases"],
)
def test_a_table_with_a_broken_alias_is_refused_whole(tmp_path, models, problem):
    before = cost_per_token("gpt-4o", 1000, 1000)
    with pytest.raises(InvalidInputError, match=problem):
        load_cost_table(write_table(tmp_path / "bad.json", models))
    assert cost_per_token("gpt-4o", 1000, 1000) == before
    assert "a" not in model_cost and "house" not in model_cost


def test_a_merged_alias_may_name_a_model_already_in_the_table(tmp_path):
    source = write_table(tmp_path / "t.json", {"my-gpt": {"alias_of": "gpt-4o"}})
    assert load_cost_table(source, merge=True) == 1
    assert cost_per_token("my-gpt", 10, 10) == cost_per_token("gpt-4o", 10, 10)
    with pytest.raises(InvalidInputError, match="'gone'"):
        load_cost_table(write_table(tmp_path / "u.json", {"x": {"alias_of": "gone"}}), merge=True)
    assert "x" not in model_cost


def test_an_alias_of_a_model_not_priced_per_token_is_left_out_with_it(tmp_path):
    image = {"mode": "image_generation", "output_cost_per_image": 0.04}
    source = write_table(
        tmp_path / "t.json",
        {"house": HOUSE, "painter": image, "painter-latest": {"alias_of": "painter"}},
    )
    assert load_cost_table(source) == 1
    assert list(model_cost) == ["house"]


def test_registering_prices_under_an_alias_changes_the_model_it_names():
    register_model({"bedrock/claude-opus-latest": {"input_cost_per_token": 1e-3}})
    assert model_cost["global.anthropic.claude-opus-5-5"]["input_cost_per_token"] == 1e-3
    assert cost_per_token("bedrock/claude-opus-latest", 1, 0) == (0.001, 0.0)


def test_register_model_takes_alias_rows_and_checks_them():
    register_model({"house-gpt": {"alias_of": "gpt-4o-mini"}})
    assert cost_per_token("house-gpt", 100, 100) == cost_per_token("gpt-4o-mini", 100, 100)
    before = len(model_cost)
    with pytest.raises(InvalidInputError, match="'nothing'"):
        register_model({"house-x": {"alias_of": "nothing"}})
    assert len(model_cost) == before and "house-x" not in model_cost


# -- unknown models ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "asked, suggested",
    [
        ("gpt4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt4o", "gpt-4o"),
        ("claude-sonnet-4.5", "claude-sonnet-4-5"),
        ("bedrock/claude-opus-lates", "bedrock/claude-opus-latest"),
    ],
)
def test_an_unknown_model_suggests_the_closest_known_names(asked, suggested):
    with pytest.raises(UnknownModelError) as info:
        cost_per_token(asked, 1, 1)
    error = info.value
    assert error.model == asked
    assert error.suggestions[0] == suggested
    assert 1 <= len(error.suggestions) <= 3
    assert f"closest known names: {suggested!r}" in str(error)
    assert "register_model" in str(error)


def test_a_name_like_nothing_known_gets_no_suggestions():
    with pytest.raises(UnknownModelError) as info:
        completion_cost(response("zzzzqqqq"))
    assert info.value.suggestions == ()
    assert "closest" not in str(info.value)
    assert "register_model" in str(info.value)
    with pytest.raises(UnknownModelError) as info:
        cost_per_token("gpt-4o" * 100, 1, 1)
    assert info.value.suggestions == ()
