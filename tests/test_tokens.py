import gzip
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from budget_manager import token_counter
from budget_manager.encodings import BUNDLED, ENCODING_SHA256, get_encoding
from budget_manager.tokens import encoding_name_for


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


def test_the_package_ships_verified_gzip_copies_of_both_encodings():
    for name, expected in ENCODING_SHA256.items():
        packed = (BUNDLED / f"{name}.tiktoken.gz").read_bytes()
        assert hashlib.sha256(gzip.decompress(packed)).hexdigest() == expected


@pytest.mark.parametrize("name", sorted(ENCODING_SHA256))
def test_the_encoding_is_the_one_tiktoken_builds(name, tmp_path, monkeypatch):
    # tiktoken's own constructor, reading the same verified file from a cache folder.
    import tiktoken_ext.openai_public

    url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    packed = (BUNDLED / f"{name}.tiktoken.gz").read_bytes()
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(gzip.decompress(packed))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    reference = getattr(tiktoken_ext.openai_public, name)()
    ours = get_encoding(name)
    assert ours.name == reference["name"]
    assert ours._pat_str == reference["pat_str"]
    assert ours._special_tokens == reference["special_tokens"]
    assert ours._mergeable_ranks == reference["mergeable_ranks"]


def _run(
    code: str, *argv: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, offline, with an empty tiktoken cache unless ``env``
    says otherwise."""
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        env={
            **os.environ,
            "BUDGET_MANAGER_OFFLINE": "1",
            "TIKTOKEN_CACHE_DIR": tempfile.mkdtemp(),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


COUNT = (
    "from budget_manager import token_counter; print(token_counter({model!r}, text='hello world'))"
)
# A process whose package lacks its copies: the bundled folder is pointed at an empty one.
WITHOUT_BUNDLED = (
    "import sys, tempfile, pathlib\n"
    "import budget_manager.encodings as encodings\n"
    "encodings.BUNDLED = pathlib.Path(tempfile.mkdtemp())\n"
)
TRY_COUNT = (
    "from budget_manager import token_counter, TokenizerUnavailableError\n"
    "for model in sys.argv[1:] or ['gpt-4']:\n"
    "    try:\n"
    "        print(token_counter(model, text='hello world'))\n"
    "    except TokenizerUnavailableError as e:\n"
    "        print('ERR', e)\n"
)


def test_counting_needs_no_cache_and_writes_none(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    result = _run(COUNT.format(model="gpt-4o"), TIKTOKEN_CACHE_DIR=str(cache))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
    assert list(cache.iterdir()) == []


def test_counting_works_without_a_usable_temp_folder():
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", COUNT.format(model="gpt-4")],
        env={**env, "BUDGET_MANAGER_OFFLINE": "1", "TMPDIR": "/nonexistent/tmp"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_without_any_source_the_error_says_how_to_fix_it():
    result = _run(WITHOUT_BUNDLED + TRY_COUNT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ERR")
    assert "cl100k_base" in result.stdout
    assert "Reinstall budget-manager" in result.stdout
    assert "BUDGET_MANAGER_ENCODINGS_DIR" in result.stdout


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_an_encodings_folder_is_a_source(tmp_path, packed):
    data = (BUNDLED / "cl100k_base.tiktoken.gz").read_bytes()
    if packed:
        (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(data)
    else:
        (tmp_path / "cl100k_base.tiktoken").write_bytes(gzip.decompress(data))
    result = _run(WITHOUT_BUNDLED + TRY_COUNT, BUDGET_MANAGER_ENCODINGS_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_tiktokens_cache_is_a_source(tmp_path):
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    packed = (BUNDLED / "cl100k_base.tiktoken.gz").read_bytes()
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(gzip.decompress(packed))
    result = _run(WITHOUT_BUNDLED + TRY_COUNT, TIKTOKEN_CACHE_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_copies_with_the_wrong_content_are_never_used(tmp_path):
    # A tampered copy in every local source (one token's rank changed): none is used.
    text = gzip.decompress((BUNDLED / "cl100k_base.tiktoken.gz").read_bytes())
    tampered = text.replace(b" 1\n", b" 7\n", 1)
    assert tampered != text
    folder, bundled, cache = (tmp_path / d for d in ("folder", "bundled", "cache"))
    for path in (folder, bundled, cache):
        path.mkdir()
    (folder / "cl100k_base.tiktoken").write_bytes(tampered)
    (bundled / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(tampered))
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(tampered)
    code = (
        "import sys, pathlib\nimport budget_manager.encodings as encodings\n"
        f"encodings.BUNDLED = pathlib.Path({str(bundled)!r})\n" + TRY_COUNT
    )
    result = _run(code, BUDGET_MANAGER_ENCODINGS_DIR=str(folder), TIKTOKEN_CACHE_DIR=str(cache))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ERR")


class _SilentServer:
    """Accepts connections on 127.0.0.1 and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/encodings/"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


def test_a_download_that_hangs_is_tried_once_per_process_then_fails_at_once():
    from budget_manager.encodings import DOWNLOAD_TIMEOUT

    server = _SilentServer()
    try:
        result = _run(
            WITHOUT_BUNDLED + TRY_COUNT + "print('done')",
            "gpt-4",
            "gpt-4",
            BUDGET_MANAGER_OFFLINE="",
            BUDGET_MANAGER_ENCODINGS_URL=server.url,
            timeout=4 * DOWNLOAD_TIMEOUT + 10,  # LiteLLM-era behaviour: 15 s per call
        )
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    first, second, done = result.stdout.splitlines()
    assert first.startswith("ERR") and "downloading it failed" in first
    assert server.url + "cl100k_base.tiktoken" in first
    assert second.startswith("ERR") and "already failed in this process" in second
    assert done == "done"
    assert len(server.accepted) == 1


class _FileServer:
    """Serves ``body`` at every path on 127.0.0.1; counts the requests."""

    def __init__(self, body: bytes) -> None:
        requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.requests = requests
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/enc"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_download_is_verified_then_kept_in_tiktokens_cache(tmp_path):
    text = gzip.decompress((BUNDLED / "cl100k_base.tiktoken.gz").read_bytes())
    server = _FileServer(text)
    try:
        fetched = _run(
            WITHOUT_BUNDLED + TRY_COUNT,
            BUDGET_MANAGER_OFFLINE="",
            BUDGET_MANAGER_ENCODINGS_URL=server.url,
            TIKTOKEN_CACHE_DIR=str(tmp_path),
        )
    finally:
        server.close()
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == "2"
    assert server.requests == ["/enc/cl100k_base.tiktoken"]
    # The next process finds it in the cache, offline.
    again = _run(WITHOUT_BUNDLED + TRY_COUNT, TIKTOKEN_CACHE_DIR=str(tmp_path))
    assert again.stdout.strip() == "2", again.stderr


def test_a_download_with_the_wrong_content_is_refused_and_not_cached(tmp_path):
    server = _FileServer(b"dGFtcGVyZWQ= 0\n")
    try:
        result = _run(
            WITHOUT_BUNDLED + TRY_COUNT,
            "gpt-4",
            "gpt-4",
            BUDGET_MANAGER_OFFLINE="",
            BUDGET_MANAGER_ENCODINGS_URL=server.url,
            TIKTOKEN_CACHE_DIR=str(tmp_path),
        )
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert "wrong SHA-256" in first
    assert "already failed in this process" in second
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_token_counter_needs_text_or_messages():
    with pytest.raises(ValueError):
        token_counter(model="gpt-4")
    with pytest.raises(TypeError):
        token_counter(model="gpt-4", messages=["not a dict"])
