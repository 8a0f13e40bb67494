"""The inputs every benchmark gives both libraries: one response, one text pair, one conversation,
and a starting store file in LiteLLM's ``user_cost.json`` format (which both libraries read)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MODEL = "gpt-4o"
PROJECT = "bench"
# Where each library keeps PROJECT's budgets in its working folder.
STORE_FILES = {"ours": "user_cost_bench.json", "litellm": "user_cost.json"}

# A chat completion as OpenAI returns it (and as LiteLLM's ModelResponse carries it).
RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_f9f4fb6dbf",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": (
                    "Your monthly spend so far is $41.20 of a $50.00 budget. At the current rate "
                    "you will reach the cap in about four days; consider a smaller model for "
                    "summaries."
                ),
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
}

INPUT_TEXT = (
    "You are a helpful assistant for a small accounting firm. Summarise the following note for a "
    "client in two sentences, keeping every figure exact: the quarterly filing is due on the 15th, "
    "the estimated payment is $4,210.55, and the late fee would be 0.5% per month of the unpaid "
    "amount. Mention that receipts for travel over $75 must be attached."
)
OUTPUT_TEXT = (
    "Your quarterly filing is due on the 15th, with an estimated payment of $4,210.55; paying late "
    "adds a fee of 0.5% of the unpaid amount for each month. Please attach receipts for any travel "
    "expense over $75 so we can include it in the filing."
)

_TURNS = [
    ("system", "You are a concise assistant that helps people plan their cloud spending."),
    ("user", "Our team spent $1,900 on GPU instances last month. Is that a lot for four people?"),
    (
        "assistant",
        "It depends on the workload: for fine-tuning experiments it is typical, for inference "
        "of a small internal tool it is high. What were the instances used for?",
    ),
    ("user", "Mostly nightly batch inference with a 7B model and a few evaluation runs."),
    (
        "assistant",
        "Then spot instances or a serverless endpoint could cut that by half. How long does "
        "the nightly batch take?",
    ),
    ("user", "About three hours on two A10G instances."),
    (
        "assistant",
        "Two A10Gs for three hours a night is roughly $300 a month on demand, so most of the "
        "$1,900 is elsewhere. Are instances left running after the batch?",
    ),
    ("user", "Possibly the evaluation boxes. How would I find out?"),
    (
        "assistant",
        "Tag every instance with its owner and purpose, then filter the cost explorer by tag "
        "and by hour; idle machines show as flat lines at full price.",
    ),
    ("user", "Great. Can you write the steps as a short checklist for the team?"),
]
CONVERSATION: list[dict[str, str]] = [{"role": r, "content": c} for r, c in _TURNS]


def user_name(index: int) -> str:
    return f"user-{index:06d}"


def sample_users(count: int, limit: int = 1000) -> list[str]:
    """Up to ``limit`` users spread evenly over a store of ``count``: the ones the loops cycle through."""
    step = max(1, count // limit)
    return [user_name(i) for i in range(0, count, step)][:limit]


def write_store(path: str | os.PathLike[str], count: int, now: float) -> None:
    """A user dict of ``count`` monthly budgets, written as LiteLLM's own save writes it."""
    users = {
        user_name(i): {
            "total_budget": 1000.0,
            "duration": 28,
            "created_at": now,
            "last_updated_at": now,
        }
        for i in range(count)
    }
    Path(path).write_text(json.dumps(users, indent=4))
