"""The one rule for user, project and model names, applied by the library, the service and every
store alike.

A name is a non-empty string of at most :data:`MAX_NAME` characters with no control character
(NUL included) and no lone surrogate: anything else (``/``, ``%``, ``..``, spaces, any other
Unicode) is an ordinary name and must round-trip exactly.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes

from .errors import InvalidInputError

MAX_NAME = 256
#: Model names are shorter: they are stored once per budget and per history event.
MAX_MODEL_NAME = 128
#: Idempotency keys of charges.
MAX_KEY = 200

# C0 and C1 controls, DEL, and lone surrogates (which UTF-8, JSON and databases cannot carry).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def problem(value: object, limit: int = MAX_NAME) -> str | None:
    """Why ``value`` is not an acceptable name, or None if it is."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > limit:
        return f"must be at most {limit} characters, got {len(value)}"
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        return f"must not contain control characters, found {bad.group()!r} at {bad.start()}"
    return None


def check(value: object, field: str, limit: int = MAX_NAME) -> str:
    """``value`` if it is an acceptable name; otherwise InvalidInputError naming ``field``."""
    if type(value) is str and 0 < len(value) <= limit and _FORBIDDEN.search(value) is None:
        return value
    raise InvalidInputError(f"{field} {shown(value)} {problem(value, limit)}", field=field)


def check_model(value: object, field: str = "model") -> str:
    """``value`` if it is an acceptable model name."""
    return check(value, field, MAX_MODEL_NAME)


def shown(value: object) -> str:
    """``repr(value)``, shortened for messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + "..." + text[-10:]


# -- names in URL paths ---------------------------------------------------------------------------
def to_segment(name: str) -> str:
    """``name`` as one URL path segment: every byte but unreserved ASCII percent-encoded, and
    the dot segments ``.`` and ``..`` encoded too, so no client, proxy or server takes them for
    path navigation."""
    text = quote(name, safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def from_segment(segment: str) -> str:
    """The name a raw (still percent-encoded) path segment carries, decoded exactly once.

    Bytes that are not UTF-8 come back as lone surrogates, which :func:`problem` refuses, so a
    malformed segment gets a clear answer rather than an exception.
    """
    raw = unquote_to_bytes(segment.encode("latin-1", "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")
