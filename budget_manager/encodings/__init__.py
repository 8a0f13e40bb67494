"""tiktoken encodings built from verified local copies, without a network.

This package ships gzip-compressed copies of tiktoken's ``cl100k_base`` and ``o200k_base`` files.
An encoding is built from the first copy whose decompressed content has the SHA-256 tiktoken expects,
looking in ``BUDGET_MANAGER_ENCODINGS_DIR`` (``<name>.tiktoken`` or ``<name>.tiktoken.gz``), in
this package, and in tiktoken's cache. Only when none verifies is the file downloaded, from
``BUDGET_MANAGER_ENCODINGS_URL`` or where tiktoken gets it (not when ``BUDGET_MANAGER_OFFLINE`` is
set): one attempt per encoding and process, with a short timeout, whose failure is remembered so
later calls fail at once.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import os
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import TokenizerUnavailableError

if TYPE_CHECKING:
    import tiktoken


@dataclass(frozen=True)
class EncodingSpec:
    """What defines an encoding besides its ranks file: that file's SHA-256, the regex that splits
    text before BPE, and the special tokens (as tiktoken defines them)."""

    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


SPECS: Mapping[str, EncodingSpec] = {
    "cl100k_base": EncodingSpec(
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
            r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": EncodingSpec(
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}
ENCODING_SHA256 = {name: spec.sha256 for name, spec in SPECS.items()}

BUNDLED = Path(__file__).resolve().parent
# Where tiktoken itself downloads from; BUDGET_MANAGER_ENCODINGS_URL replaces it (a folder URL).
DOWNLOAD_URL = "https://openaipublic.blob.core.windows.net/encodings/"
DOWNLOAD_TIMEOUT = 3.0  # seconds to connect, and of silence while reading
DOWNLOAD_DEADLINE = 30.0  # seconds for the whole download

_FIX = (
    "Reinstall budget-manager (its package data holds verified copies), or put "
    "{name}.tiktoken in a folder named by BUDGET_MANAGER_ENCODINGS_DIR, or allow downloads from "
    "{url}."
)

_encodings: dict[str, tiktoken.Encoding] = {}
_failed_downloads: dict[str, str] = {}
_lock = threading.Lock()


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, built once per process from a verified file."""
    encoding = _encodings.get(name)
    if encoding is not None:
        return encoding
    with _lock:
        if name not in _encodings:
            _encodings[name] = _build(name)
        return _encodings[name]


def _build(name: str) -> tiktoken.Encoding:
    spec = SPECS.get(name)
    if spec is None:
        raise TokenizerUnavailableError(f"unknown encoding {name!r}; known: {sorted(SPECS)}")
    data = verified_copy(name) or _download(name)
    import tiktoken

    return tiktoken.Encoding(
        name=name,
        pat_str=spec.pat_str,
        mergeable_ranks=parse_ranks(data),
        special_tokens=dict(spec.special_tokens),
    )


def parse_ranks(data: bytes) -> dict[bytes, int]:
    """The token -> rank map of a ``.tiktoken`` file (lines of ``base64-token rank``)."""
    fields = data.split()
    return dict(zip(map(binascii.a2b_base64, fields[::2]), map(int, fields[1::2]), strict=True))


# -- local copies ---------------------------------------------------------------------------------
def verified_copy(name: str) -> bytes | None:
    """The content of the first local copy of ``name`` whose SHA-256 is right, or None."""
    for path in _local_candidates(name):
        data = _read(path)
        if data is not None and path.suffix == ".gz":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error):
                data = None
        if _verified(data, SPECS[name].sha256):
            return data
    return None


def _local_candidates(name: str) -> Iterator[Path]:
    folder = os.environ.get("BUDGET_MANAGER_ENCODINGS_DIR")
    if folder:
        yield Path(folder) / f"{name}.tiktoken"
        yield Path(folder) / f"{name}.tiktoken.gz"
    yield BUNDLED / f"{name}.tiktoken.gz"
    cache = _tiktoken_cache_path(name)
    if cache is not None:
        yield cache


def _tiktoken_cache_path(name: str) -> Path | None:
    # The file tiktoken.load.read_file_cached would use for this encoding (None: caching disabled).
    folder = os.environ.get("TIKTOKEN_CACHE_DIR")
    if folder is None:
        folder = os.environ.get("DATA_GYM_CACHE_DIR")
    if folder is None:
        try:
            folder = os.path.join(tempfile.gettempdir(), "data-gym-cache")
        except OSError:  # no usable temporary folder: no cache either
            return None
    if folder == "":
        return None
    url = DOWNLOAD_URL + f"{name}.tiktoken"
    return Path(folder) / hashlib.sha1(url.encode()).hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _verified(data: bytes | None, expected: str) -> bool:
    return data is not None and hashlib.sha256(data).hexdigest() == expected


# -- download -------------------------------------------------------------------------------------
def _download(name: str) -> bytes:
    base = os.environ.get("BUDGET_MANAGER_ENCODINGS_URL") or DOWNLOAD_URL
    url = base.rstrip("/") + f"/{name}.tiktoken"
    fix = _FIX.format(name=name, url=base)
    if os.environ.get("BUDGET_MANAGER_OFFLINE"):
        raise TokenizerUnavailableError(
            f"no verified copy of the {name} encoding is available and downloads are off "
            f"(BUDGET_MANAGER_OFFLINE). {fix}"
        )
    earlier = _failed_downloads.get(name)
    if earlier is not None:
        raise TokenizerUnavailableError(
            f"no verified copy of the {name} encoding is available, and downloading it already "
            f"failed in this process ({earlier}); it is not retried. {fix}"
        )
    try:
        data = _fetch(url)
    except OSError as exc:
        problem = f"{url}: {exc}"
    else:
        if _verified(data, SPECS[name].sha256):
            _store_in_tiktoken_cache(name, data)
            return data
        problem = f"{url} sent a file with the wrong SHA-256"
    _failed_downloads[name] = problem
    raise TokenizerUnavailableError(
        f"no verified copy of the {name} encoding is available, and downloading it failed "
        f"({problem}). {fix}"
    )


def _fetch(url: str) -> bytes:
    """The body at ``url``; OSError (requests' errors are OSErrors) when it cannot be had within
    the timeout and the deadline."""
    import requests

    deadline = time.monotonic() + DOWNLOAD_DEADLINE
    chunks: list[bytes] = []
    with requests.get(url, timeout=DOWNLOAD_TIMEOUT, stream=True) as response:
        response.raise_for_status()
        for chunk in response.iter_content(1 << 16):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError(f"not complete after {DOWNLOAD_DEADLINE:g} s")
    return b"".join(chunks)


def _store_in_tiktoken_cache(name: str, data: bytes) -> None:
    # So the next process finds it without a download; a cache it cannot write is no error.
    path = _tiktoken_cache_path(name)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
