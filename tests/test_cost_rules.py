"""Pricing rules with exact expectations: token kinds, thresholds, ranges, tiers, off-peak hours,
response shapes of the SDKs, streams, and loading a price table at run time."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import utc

from budget_manager import (
    BudgetManager,
    InvalidInputError,
    UnknownModelError,
    completion_cost,
    cost_per_token,
    load_cost_table,
    model_cost,
)
from budget_manager.costs import response_cost
from budget_manager.costs.table import TABLE


def price(model: str, key: str) -> Decimal:
    return Decimal(repr(model_cost[model][key]))


def cost(response: Any, now: float | None = None) -> Decimal:
    return response_cost(response, now=now)[1]


def chat(model: str, prompt: int, completion: int, **usage: Any) -> dict[str, Any]:
    return {
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            **usage,
        },
    }


@pytest.fixture
def table():
    yield TABLE
    TABLE.reset()


# -- token kinds ---------------------------------------------------------------------------------
def test_cached_prompt_tokens_bill_at_the_cache_read_price():
    response = chat("gpt-4o", 1000, 100, prompt_tokens_details={"cached_tokens": 600})
    expected = (
        400 * price("gpt-4o", "input_cost_per_token")
        + 600 * price("gpt-4o", "cache_read_input_token_cost")
        + 100 * price("gpt-4o", "output_cost_per_token")
    )
    assert cost(response) == expected


def test_anthropic_cache_reads_and_writes_by_lifetime():
    model = "claude-sonnet-4-5"
    response = {
        "model": model,
        "usage": {
            "input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 3000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 2000,
                "ephemeral_1h_input_tokens": 1000,
            },
            "output_tokens": 50,
        },
    }
    expected = (
        100 * price(model, "input_cost_per_token")
        + 1000 * price(model, "cache_read_input_token_cost")
        + 2000 * price(model, "cache_creation_input_token_cost")
        + 1000 * price(model, "cache_creation_input_token_cost_above_1hr")
        + 50 * price(model, "output_cost_per_token")
    )
    assert cost(response) == expected


def test_reasoning_tokens_use_the_reasoning_price_where_the_table_has_one():
    model = "gemini-2.5-flash"
    response = chat(model, 100, 500, completion_tokens_details={"reasoning_tokens": 400})
    expected = (
        100 * price(model, "input_cost_per_token")
        + 100 * price(model, "output_cost_per_token")
        + 400 * price(model, "output_cost_per_reasoning_token")
    )
    assert cost(response) == expected
    # without a reasoning price they are output tokens
    plain = chat("o3-mini", 100, 500, completion_tokens_details={"reasoning_tokens": 400})
    assert cost(plain) == 100 * price("o3-mini", "input_cost_per_token") + 500 * price(
        "o3-mini", "output_cost_per_token"
    )


def test_a_prompt_above_a_threshold_bills_wholly_at_that_tier():
    model = "gemini/gemini-2.5-pro"
    at = chat(model, 200_000, 10)
    above = chat(model, 200_001, 10, prompt_tokens_details={"cached_tokens": 1})
    assert cost(at) == 200_000 * price(model, "input_cost_per_token") + 10 * price(
        model, "output_cost_per_token"
    )
    assert cost(above) == (
        200_000 * price(model, "input_cost_per_token_above_200k_tokens")
        + 1 * price(model, "cache_read_input_token_cost_above_200k_tokens")
        + 10 * price(model, "output_cost_per_token_above_200k_tokens")
    )


def test_tiered_pricing_ranges_choose_one_tier_for_the_whole_call():
    model = "opencode_go/claude-haiku-5-5"
    tiers = model_cost[model]["tiered_pricing"]
    low, high = ({k: Decimal(repr(v)) for k, v in t.items() if k != "range"} for t in tiers)
    assert (
        cost(chat(model, 100_000, 10))
        == 100_000 * low["input_cost_per_token"] + 10 * low["output_cost_per_token"]
    )
    assert (
        cost(chat(model, 100_001, 10))
        == 100_001 * high["input_cost_per_token"] + 10 * high["output_cost_per_token"]
    )


def test_service_tiers_named_by_the_response_use_their_prices():
    model = "gpt-5"
    response = {**chat(model, 1000, 100), "service_tier": "priority"}
    assert cost(response) == 1000 * price(model, "input_cost_per_token_priority") + 100 * price(
        model, "output_cost_per_token_priority"
    )
    flex = {**chat(model, 1000, 100), "service_tier": "flex"}
    assert cost(flex) == 1000 * price(model, "input_cost_per_token_flex") + 100 * price(
        model, "output_cost_per_token_flex"
    )
    default = {**chat(model, 1000, 100), "service_tier": "default"}
    assert cost(default) == cost(chat(model, 1000, 100))


def test_off_peak_hours_use_the_off_peak_prices(clock, tmp_path):
    model = "deepseek/deepseek-flash"
    off_peak = model_cost[model]["off_peak_pricing"]
    response = chat(model, 1000, 100)
    peak_cost = 1000 * price(model, "input_cost_per_token") + 100 * price(
        model, "output_cost_per_token"
    )
    cheap_cost = 1000 * Decimal(repr(off_peak["input_cost_per_token"])) + 100 * Decimal(
        repr(off_peak["output_cost_per_token"])
    )
    monday_morning = utc("2026-11-23T08:00:00")  # between the weekday windows
    monday_noon = utc("2026-11-23T12:00:00")  # inside 10:00-00:00
    saturday_morning = utc("2026-11-28T08:00:00")  # weekends are off-peak all day
    assert cost(response, now=monday_morning) == peak_cost
    assert cost(response, now=monday_noon) == cheap_cost
    assert cost(response, now=saturday_morning) == cheap_cost
    # BudgetManager prices at its own clock
    clock.set("2026-11-23T12:00:00")
    manager = BudgetManager("offpeak", path=tmp_path / "b.json", clock=clock)
    manager.create_budget(1.0, "u")
    manager.update_cost("u", completion_obj=response)
    assert manager.get_current_cost("u") == float(cheap_cost)


def test_cost_per_token_takes_cache_counts():
    model = "claude-sonnet-4-5"
    prompt, completion = cost_per_token(
        model,
        prompt_tokens=5000,
        completion_tokens=10,
        cache_read_input_tokens=2000,
        cache_creation_input_tokens=1000,
    )
    assert prompt == float(
        2000 * price(model, "input_cost_per_token")
        + 2000 * price(model, "cache_read_input_token_cost")
        + 1000 * price(model, "cache_creation_input_token_cost")
    )
    assert completion == float(10 * price(model, "output_cost_per_token"))
    with pytest.raises(InvalidInputError, match="cache_read_input_tokens"):
        cost_per_token(model, prompt_tokens=10, cache_read_input_tokens=-1)


# -- response shapes -----------------------------------------------------------------------------
def plain_cost(model: str, prompt: int, completion: int) -> float:
    return float(
        prompt * price(model, "input_cost_per_token")
        + completion * price(model, "output_cost_per_token")
    )


def test_openai_sdk_chat_completion_objects():
    import openai.types.chat as openai_types

    data = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hi"},
            }
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    response = openai_types.ChatCompletion.model_validate(data)
    assert completion_cost(response) == plain_cost("gpt-4o-mini", 120, 30)
    assert completion_cost(data) == completion_cost(response)


def test_openai_responses_api_usage():
    import openai.types.responses as responses

    usage = responses.ResponseUsage.model_validate(
        {
            "input_tokens": 1000,
            "input_tokens_details": {"cached_tokens": 200, "cache_write_tokens": 0},
            "output_tokens": 300,
            "output_tokens_details": {"reasoning_tokens": 100},
            "total_tokens": 1300,
        }
    )
    response = responses.Response.model_construct(model="gpt-4.1", usage=usage, output=[])
    model = "gpt-4.1"
    expected = (
        800 * price(model, "input_cost_per_token")
        + 200 * price(model, "cache_read_input_token_cost")
        + 300 * price(model, "output_cost_per_token")
    )
    assert completion_cost(response) == float(expected)
    assert completion_cost({"model": model, "usage": usage.model_dump()}) == float(expected)


def test_anthropic_sdk_message_objects(tmp_path):
    import anthropic.types as anthropic_types

    message = anthropic_types.Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": 200,
                "output_tokens": 40,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 0,
            },
        }
    )
    model = "claude-haiku-4-5"
    expected = (
        200 * price(model, "input_cost_per_token")
        + 1000 * price(model, "cache_read_input_token_cost")
        + 40 * price(model, "output_cost_per_token")
    )
    assert completion_cost(message) == float(expected)
    manager = BudgetManager("anthropic", path=tmp_path / "b.json")
    manager.create_budget(1.0, "u")
    manager.update_cost("u", completion_obj=message)
    assert manager.get_current_cost("u") == float(expected)
    assert manager.get_model_cost("u") == {model: float(expected)}


def test_litellm_model_response_objects():
    import litellm

    response = litellm.ModelResponse(
        **chat("gpt-4o", 1000, 100, prompt_tokens_details={"cached_tokens": 500})
    )
    expected = (
        500 * price("gpt-4o", "input_cost_per_token")
        + 500 * price("gpt-4o", "cache_read_input_token_cost")
        + 100 * price("gpt-4o", "output_cost_per_token")
    )
    assert completion_cost(response) == float(expected)


def chunks(model: str, words: list[str], usage: dict[str, int] | None) -> list[dict[str, Any]]:
    out = [
        {
            "model": model,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": w}}],
        }
        for w in words
    ]
    if usage is not None:
        out.append({"model": model, "choices": [], "usage": usage})
    return out


def test_streams_are_priced_from_the_last_usage_or_the_text():
    model = "gpt-4o"
    usage = {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57}
    stream = chunks(model, ["Hello", " there"], usage)
    assert completion_cost(stream) == plain_cost(model, 50, 7)
    assert completion_cost(iter(stream)) == plain_cost(model, 50, 7)
    # no usage anywhere: the received text is counted, and the prompt when messages are given
    bare = chunks(model, ["Hello", " there", " friend"], None)
    messages = [{"role": "user", "content": "Say hello"}]
    from budget_manager import token_counter

    out_tokens = token_counter(model=model, text="Hello there friend")
    in_tokens = token_counter(model=model, messages=messages)
    assert completion_cost(bare) == plain_cost(model, 0, out_tokens)
    assert completion_cost(iter(bare), messages=messages) == plain_cost(
        model, in_tokens, out_tokens
    )


def test_openai_sdk_chunk_objects_and_anthropic_stream_events():
    import openai.types.chat as chat_types

    raw = chunks(
        "gpt-4o", ["Hi"], {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    )
    objects = [
        chat_types.ChatCompletionChunk.model_validate(
            {"id": "c", "created": 1, "object": "chat.completion.chunk", **chunk}
        )
        for chunk in raw
    ]
    assert completion_cost(objects) == plain_cost("gpt-4o", 10, 2)
    model = "claude-haiku-4-5"
    events = [
        {
            "type": "message_start",
            "message": {"model": model, "usage": {"input_tokens": 30, "output_tokens": 1}},
        },
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "message_delta", "usage": {"output_tokens": 12}},
        {"type": "message_stop"},
    ]
    assert completion_cost(events) == plain_cost(model, 30, 12)


def test_a_stream_without_a_known_model_needs_one():
    with pytest.raises(InvalidInputError, match="model"):
        completion_cost([{"choices": [{"delta": {"content": "x"}}]}])
    assert completion_cost([{"choices": [{"delta": {"content": "x"}}]}], model="gpt-4o") > 0


# -- loading a table at run time -----------------------------------------------------------------
def write_table(path: Path, models: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"sample_spec": {"mode": "chat"}, **models}))
    return path


def test_load_cost_table_replaces_or_merges(table, tmp_path):
    source = write_table(
        tmp_path / "prices.json",
        {
            "house-model": {
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
                "mode": "chat",
            }
        },
    )
    assert load_cost_table(source, merge=True) == 1
    assert "house-model" in model_cost and "gpt-4o" in model_cost
    assert cost_per_token("house-model", 1000, 1000) == (0.001, 0.002)
    assert load_cost_table(str(source)) == 1
    assert list(model_cost) == ["house-model"]
    with pytest.raises(UnknownModelError):
        cost_per_token("gpt-4o", 1, 1)


@pytest.mark.parametrize(
    "body, problem",
    [
        (b'{"gpt-4o": {"input_cost_per_token": 1e-06,', "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"m": {"mode": "chat"}}', "prices no models"),
        (b'{"m": {"input_cost_per_token": -1}}', "m.input_cost_per_token"),
        (b'{"m": {"input_cost_per_token": "cheap"}}', "m.input_cost_per_token"),
    ],
    ids=["truncated", "not-object", "no-prices", "negative", "not-a-number"],
)
def test_a_bad_table_raises_and_leaves_the_old_one(table, tmp_path, body, problem):
    before = cost_per_token("gpt-4o", 1000, 1000)
    path = tmp_path / "bad.json"
    path.write_bytes(body)
    with pytest.raises(InvalidInputError, match=problem):
        load_cost_table(path)
    assert cost_per_token("gpt-4o", 1000, 1000) == before
    assert len(model_cost) > 3000


class _TableServer(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, b"no such table"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def table_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TableServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_load_cost_table_from_a_url(table, table_server):
    good = json.dumps({"web-model": {"input_cost_per_token": 3e-6, "output_cost_per_token": 0}})
    _TableServer.routes = {
        "/good.json": (200, good.encode()),
        "/partial.json": (200, good.encode()[:20]),
        "/gone.json": (503, b"unavailable"),
    }
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_cost_table(f"{table_server}/partial.json")
    with pytest.raises(InvalidInputError, match="503"):
        load_cost_table(f"{table_server}/gone.json")
    assert "gpt-4o" in model_cost and "web-model" not in model_cost
    assert load_cost_table(f"{table_server}/good.json", merge=True) == 1
    assert cost_per_token("web-model", 1000, 5) == (0.003, 0.0)
    with pytest.raises(InvalidInputError, match="could not download"):
        load_cost_table("http://127.0.0.1:9/prices.json", timeout=2)


def test_names_resolve_without_provider_and_region_segments():
    plain = completion_cost(chat("anthropic.claude-3-5-sonnet-20240620-v1:0", 1000, 10))
    for name in (
        "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
        "bedrock/us-east-1/anthropic.claude-3-5-sonnet-20240620-v1:0",
    ):
        assert completion_cost(chat(name, 1000, 10)) == plain
    assert completion_cost(chat("openai/gpt-4o", 1000, 10)) == completion_cost(
        chat("gpt-4o", 1000, 10)
    )
    with pytest.raises(UnknownModelError):
        completion_cost(chat("nobody/unknown-model", 1, 1))


def test_register_model_takes_a_url_like_litellm(table, table_server):
    _TableServer.routes = {
        "/extra.json": (200, json.dumps({"url-model": {"input_cost_per_token": 1e-6}}).encode())
    }
    from budget_manager import register_model

    register_model(f"{table_server}/extra.json")
    assert cost_per_token("url-model", 1000, 0) == (0.001, 0.0)
    assert "gpt-4o" in model_cost
