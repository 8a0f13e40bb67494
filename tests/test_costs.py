import json
from importlib import resources
from types import SimpleNamespace

import pytest

from budget_manager import (
    MissingUsageError,
    UnknownModelError,
    completion_cost,
    cost_per_token,
    model_cost,
    register_model,
)


def bundled() -> dict:
    return json.loads(resources.files("budget_manager.costs").joinpath("prices.json").read_text())


def test_table_records_its_source_and_covers_openai_and_anthropic_chat_models():
    table = bundled()
    assert "litellm" in table["metadata"]["source"] and table["metadata"]["generated_at"]
    for model in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-3.5-turbo",
        "gpt-4",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-5",
    ]:
        assert model in table["models"], model


def test_cost_per_token_uses_the_tables_prices():
    entry = model_cost["gpt-4o"]
    prompt, completion = cost_per_token("gpt-4o", prompt_tokens=1000, completion_tokens=500)
    assert prompt == pytest.approx(1000 * entry["input_cost_per_token"], rel=1e-12)
    assert completion == pytest.approx(500 * entry["output_cost_per_token"], rel=1e-12)
    assert cost_per_token("claude-sonnet-4-5", 1_000_000, 0)[0] == pytest.approx(3.0)


def test_provider_prefixed_names_resolve():
    assert cost_per_token("openai/gpt-4o", 10, 10) == cost_per_token("gpt-4o", 10, 10)
    assert cost_per_token("anthropic/claude-sonnet-4-5", 10, 10) == cost_per_token(
        "claude-sonnet-4-5", 10, 10
    )


def test_completion_cost_reads_dicts_and_objects():
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    as_dict = completion_cost({"model": "gpt-4o-mini", "usage": usage})
    as_object = completion_cost(
        SimpleNamespace(model="gpt-4o-mini", usage=SimpleNamespace(**usage))
    )
    assert as_dict == as_object == pytest.approx(sum(cost_per_token("gpt-4o-mini", 100, 20)))


def test_completion_cost_of_an_anthropic_message():
    message = {
        "type": "message",
        "model": "claude-sonnet-4-5",
        "usage": {"input_tokens": 1000, "output_tokens": 100},
    }
    assert completion_cost(message) == pytest.approx(1000 * 3e-6 + 100 * 15e-6)


def test_completion_cost_from_text():
    assert completion_cost(model="gpt-3.5-turbo", prompt="hello world", completion="hi") > 0


def test_a_response_without_usage_is_an_error_not_a_zero():
    with pytest.raises(MissingUsageError, match="usage"):
        completion_cost({"model": "gpt-4o", "choices": []})


def test_unknown_models_name_themselves_and_how_to_register():
    with pytest.raises(UnknownModelError) as info:
        cost_per_token("my-private-model", 1, 1)
    assert "my-private-model" in str(info.value) and "register_model" in str(info.value)


def test_register_model_adds_and_overrides():
    register_model({"my-private-model": {"input_cost_per_token": 0.5, "output_cost_per_token": 1}})
    assert cost_per_token("my-private-model", 2, 3) == (1.0, 3.0)
    register_model({"my-private-model": {"output_cost_per_token": 2}})
    assert cost_per_token("my-private-model", 2, 3) == (1.0, 6.0)
    assert model_cost["my-private-model"]["input_cost_per_token"] == 0.5


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"m": "cheap"},
        {"m": {"input_cost_per_token": -1}},
        {"m": {"input_cost_per_token": float("nan")}},
        {"m": {"max_tokens": 10}},
        {"": {"input_cost_per_token": 1}},
    ],
)
def test_register_model_rejects_bad_entries_and_changes_nothing(bad):
    before = len(model_cost)
    with pytest.raises(ValueError):
        register_model(bad)
    assert len(model_cost) == before


def test_model_cost_is_read_only():
    with pytest.raises(TypeError):
        model_cost["gpt-4o"]["input_cost_per_token"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        model_cost["x"] = {}  # type: ignore[index]
