"""ModelResponse: a chat completion that reads both as a dict and by attribute."""

from __future__ import annotations

from typing import Any


class AttrDict(dict[str, Any]):
    """A dict whose keys also read as attributes, recursively (``r.choices[0].message``)."""

    def __init__(self, data: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__()
        for key, value in {**(data or {}), **kwargs}.items():
            self[key] = _wrap(value)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = _wrap(value)

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def model_dump(self) -> dict[str, Any]:
        """A plain-dict copy (the name pydantic-based SDK objects use)."""
        return _unwrap(self)  # type: ignore[no-any-return]


class ModelResponse(AttrDict):
    """The response of :func:`budget_manager.completion`: the endpoint's JSON body."""


def _wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, AttrDict):
        return AttrDict(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value
