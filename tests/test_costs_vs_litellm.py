"""The bundled table and the cost engine against LiteLLM's, model by model.

LiteLLM (pinned in the [bench] extra to the release the table was generated from) prices the same
responses; figures must agree to 1e-9 relative.
"""

from __future__ import annotations

import json
import logging
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import litellm  # conftest sets LITELLM_LOCAL_MODEL_COST_MAP first
import pytest

from budget_manager import completion_cost, cost_per_token, model_cost

litellm.suppress_debug_info = True

OURS: dict[str, dict[str, Any]] = json.loads(
    resources.files("budget_manager.costs").joinpath("prices.json").read_text()
)["models"]
REFERENCE: dict[str, Any] = json.loads(
    (Path(litellm.__file__).parent / "model_prices_and_context_window_backup.json").read_text()
)
# Providers whose models LiteLLM cannot price without credentials (it tries to log in).
NEEDS_LOGIN = {"github_copilot", "chatgpt"}
# Where LiteLLM's name resolution prices a model under another table entry than its own name
# (the region segment of bedrock_mantle keys is dropped; perplexity/perplexity/x is read as
# perplexity/x; a derived priority price for one Vertex model), we price the named entry.
RESOLVED_ELSEWHERE = ("bedrock_mantle/", "perplexity/perplexity/")
PRIORITY_DERIVED = {"gemini-3.1-pro-preview-customtools", "moonshotai.kimi-k2.5"}
# LiteLLM's alias rows ({"alias_of": "target"}), kept in the table as they are.
ALIASES = {name: entry["alias_of"] for name, entry in OURS.items() if "alias_of" in entry}


def close(ours: float, reference: float) -> bool:
    return ours == reference or abs(ours - reference) <= 1e-9 * max(abs(ours), abs(reference))


def test_every_priced_chat_model_of_the_reference_is_in_the_table():
    modes = {"chat", "completion", "responses"}
    expected = {
        name
        for name, entry in REFERENCE.items()
        if isinstance(entry, dict)
        and entry.get("mode") in modes
        and any(
            k in entry for k in ("input_cost_per_token", "output_cost_per_token", "tiered_pricing")
        )
    }
    assert expected <= set(OURS)
    assert len(OURS) > 3000
    assert len({model_cost[name]["litellm_provider"] for name in OURS}) >= 90


def test_every_alias_of_the_reference_is_in_the_table():
    reference = {
        name: entry["alias_of"]
        for name, entry in REFERENCE.items()
        if isinstance(entry, dict) and "alias_of" in entry
    }
    assert reference == ALIASES
    assert len(ALIASES) == 98
    assert ALIASES["bedrock/claude-opus-latest"] == "global.anthropic.claude-opus-5-5"


def test_every_price_in_the_table_equals_the_reference():
    differences = [
        (name, key)
        for name, entry in OURS.items()
        for key, value in entry.items()
        if REFERENCE[name].get(key) != value
    ]
    assert differences == []
    for name in ("gpt-4o", "claude-sonnet-4-5", "gemini/gemini-2.5-pro"):
        assert (
            OURS[name]["input_cost_per_token"] == litellm.model_cost[name]["input_cost_per_token"]
        )


def chat(model: str, prompt: int, completion: int, **usage: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            **usage,
        },
    }


SCENARIOS = {
    "plain": lambda m: chat(m, 1000, 500),
    "openai cache hit": lambda m: chat(m, 1000, 500, prompt_tokens_details={"cached_tokens": 400}),
    "reasoning": lambda m: chat(m, 1000, 500, completion_tokens_details={"reasoning_tokens": 300}),
    "anthropic cache": lambda m: chat(
        m, 1000, 500, cache_read_input_tokens=400, cache_creation_input_tokens=200
    ),
    "cache lifetimes": lambda m: chat(
        m,
        5000,
        500,
        cache_read_input_tokens=1000,
        cache_creation_input_tokens=3000,
        prompt_tokens_details={
            "cached_tokens": 1000,
            "cache_creation_token_details": {
                "ephemeral_5m_input_tokens": 1000,
                "ephemeral_1h_input_tokens": 1500,
            },
        },
    ),
    "above 128k": lambda m: chat(m, 150_000, 2000),
    "above 200k cached": lambda m: chat(
        m, 250_000, 2000, prompt_tokens_details={"cached_tokens": 50_000}
    ),
    "above 272k": lambda m: chat(m, 300_000, 2000),
    "priority tier": lambda m: {
        **chat(m, 1000, 500, prompt_tokens_details={"cached_tokens": 200}),
        "service_tier": "priority",
    },
    "flex tier, long": lambda m: {
        **chat(
            m,
            300_000,
            500,
            prompt_tokens_details={"cached_tokens": 200},
            completion_tokens_details={"reasoning_tokens": 100},
        ),
        "service_tier": "flex",
    },
    "audio": lambda m: chat(
        m,
        1000,
        500,
        prompt_tokens_details={"audio_tokens": 300, "cached_tokens": 100},
        completion_tokens_details={"audio_tokens": 200, "reasoning_tokens": 50},
    ),
    "deepseek cache hit": lambda m: chat(
        m, 1000, 500, prompt_cache_hit_tokens=300, prompt_cache_miss_tokens=700
    ),
    "text tokens reported": lambda m: chat(
        m,
        1000,
        500,
        prompt_tokens_details={"cached_tokens": 300, "text_tokens": 1000},
        completion_tokens_details={"reasoning_tokens": 200, "text_tokens": 500},
    ),
    "nothing": lambda m: chat(m, 0, 0),
}


def comparable(name: str) -> bool:
    return model_cost[name]["litellm_provider"] not in NEEDS_LOGIN and not name.startswith(
        RESOLVED_ELSEWHERE
    )


def comparable_models() -> list[str]:
    """Every model of the table but the aliases (compared on their own below)."""
    return [name for name in OURS if name not in ALIASES and comparable(name)]


def reference_cost(response: dict[str, Any]) -> float | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(
                litellm.completion_cost(completion_response=litellm.ModelResponse(**response))
            )
        except Exception:  # LiteLLM cannot price some names by the response alone
            return None


def test_the_corpus_is_priced_as_litellm_prices_it():
    logging.disable(logging.CRITICAL)
    compared, differences = 0, []
    try:
        for model in comparable_models():
            for scenario, make in SCENARIOS.items():
                if scenario == "priority tier" and model in PRIORITY_DERIVED:
                    continue
                response = make(model)
                reference = reference_cost(response)
                if reference is None:
                    continue
                ours = completion_cost(response)
                compared += 1
                if not close(ours, reference):
                    differences.append((model, scenario, ours, reference))
    finally:
        logging.disable(logging.NOTSET)
    assert differences == []
    assert compared > 40_000


@pytest.mark.parametrize(
    "counts",
    [
        {"prompt_tokens": 1000, "completion_tokens": 500},
        {"prompt_tokens": 250_000, "completion_tokens": 100},
        {
            "prompt_tokens": 5000,
            "completion_tokens": 100,
            "cache_read_input_tokens": 2000,
            "cache_creation_input_tokens": 1000,
        },
    ],
    ids=["plain", "long", "cached"],
)
def test_cost_per_token_agrees_with_litellm_for_every_model(counts):
    differences, compared = [], 0
    for model in comparable_models():
        try:
            reference = litellm.cost_per_token(model=model, **counts)
        except Exception:
            continue
        ours = cost_per_token(model, **counts)
        compared += 1
        if not (close(ours[0], reference[0]) and close(ours[1], reference[1])):
            differences.append((model, ours, reference))
    assert differences == []
    assert compared > 3000


def alias_comparable(alias: str) -> bool:
    return model_cost[alias]["litellm_provider"] not in NEEDS_LOGIN


def test_every_alias_prices_as_litellm_prices_it():
    logging.disable(logging.CRITICAL)
    compared, differences = set(), []
    try:
        for alias in filter(alias_comparable, ALIASES):
            for scenario, make in SCENARIOS.items():
                response = make(alias)
                reference = reference_cost(response)
                if reference is None:
                    continue
                ours = completion_cost(response)
                compared.add(alias)
                if not close(ours, reference):
                    differences.append((alias, scenario, ours, reference))
            counts = {"prompt_tokens": 250_000, "completion_tokens": 100}
            ours_split = cost_per_token(alias, **counts)
            reference_split = litellm.cost_per_token(model=alias, **counts)
            if not all(map(close, ours_split, reference_split)):
                differences.append((alias, "cost_per_token", ours_split, reference_split))
    finally:
        logging.disable(logging.NOTSET)
    assert differences == []
    assert len(compared) == len(list(filter(alias_comparable, ALIASES))) == 88


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_an_alias_is_its_target(alias):
    target = ALIASES[alias]
    assert dict(model_cost[alias]) == dict(model_cost[target])
    assert alias in model_cost and alias in list(model_cost)
    assert all(litellm.model_cost[alias][key] == value for key, value in model_cost[alias].items())
    for scenario in ("plain", "above 200k cached", "anthropic cache"):
        response = SCENARIOS[scenario](alias)
        assert completion_cost(response) == completion_cost({**response, "model": target})
    assert cost_per_token(alias, 1000, 500) == cost_per_token(target, 1000, 500)
