"""Type-checked by tests/test_wrap_typing.py (never run): wrap() keeps the SDK's types."""

from __future__ import annotations

import anthropic
import openai
from anthropic.types import Message
from openai import Stream
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response
from typing_extensions import assert_type

from budget_manager import AsyncBudgetManager, BudgetManager, wrap


def sync_clients(bm: BudgetManager) -> None:
    client = wrap(openai.OpenAI(api_key="k"), bm, user="ann")
    assert_type(client, openai.OpenAI)
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert_type(completion, ChatCompletion)
    chunks = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert_type(chunks, Stream[ChatCompletionChunk])
    assert_type(client.responses.create(model="gpt-4o-mini", input="hi"), Response)
    claude = wrap(anthropic.Anthropic(api_key="k"), bm)
    assert_type(claude, anthropic.Anthropic)
    reply = claude.messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert_type(reply, Message)


async def async_clients(bm: AsyncBudgetManager) -> None:
    client = wrap(openai.AsyncOpenAI(api_key="k"), bm)
    assert_type(client, openai.AsyncOpenAI)
    assert_type(await client.responses.create(model="gpt-4o-mini", input="hi"), Response)
    claude = wrap(anthropic.AsyncAnthropic(api_key="k"), bm)
    assert_type(claude, anthropic.AsyncAnthropic)
