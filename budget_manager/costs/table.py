"""The price table: bundled data loaded lazily once, run-time overrides, and name lookup."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any

from ..errors import InvalidInputError, UnknownModelError
from ..money import to_money
from .prices import ModelPrices, compile_prices

Entry = Mapping[str, Any]


class PriceTable:
    """Model name -> price entry (LiteLLM's format), with compiled exact prices cached per model."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] | None = None
        self._metadata: dict[str, Any] = {}
        self._compiled: dict[str, ModelPrices] = {}
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------------
    def _table(self) -> dict[str, dict[str, Any]]:
        entries = self._entries
        if entries is None:
            with self._lock:
                if self._entries is None:
                    document = json.loads(
                        resources.files(__package__).joinpath("prices.json").read_bytes()
                    )
                    self._metadata = document["metadata"]
                    self._entries = document["models"]
                entries = self._entries
        return entries

    def reset(self) -> None:
        """Drop run-time changes: the bundled table is read again at next use."""
        with self._lock:
            self._entries = None
            self._compiled.clear()

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Where the bundled table came from (source, its SHA-256, generation date)."""
        self._table()
        return MappingProxyType(self._metadata)

    def register(self, prices: Mapping[str, Entry]) -> None:
        """Add models or override some of their keys (LiteLLM's ``register_model`` semantics)."""
        if not isinstance(prices, Mapping) or not prices:
            raise InvalidInputError(
                'register_model takes {"model-name": {"input_cost_per_token": ..., '
                '"output_cost_per_token": ...}}'
            )
        table = self._table()
        merged: dict[str, dict[str, Any]] = {}
        for name, entry in prices.items():
            if not isinstance(name, str) or not name:
                raise InvalidInputError(f"model names must be non-empty strings, got {name!r}")
            if not isinstance(entry, Mapping):
                raise InvalidInputError(
                    f"the price entry of {name!r} must be a dict, got {entry!r}"
                )
            key = self._resolve(name) or name
            updated = {**table.get(key, {}), **_validated(name, entry)}
            if "input_cost_per_token" not in updated and "output_cost_per_token" not in updated:
                raise InvalidInputError(
                    f"model {name!r} needs input_cost_per_token and/or output_cost_per_token"
                )
            merged[key] = updated
        with self._lock:
            table.update(merged)
            self._compiled.clear()

    def load(self, document: object, *, merge: bool, source: str) -> int:
        """Replace (or, with ``merge``, extend) the table with a LiteLLM-format price document,
        validated whole first; returns the number of models read from it."""
        models = _models_of(document, source)
        table = self._table()
        with self._lock:
            if merge:
                table.update(models)
            else:
                self._entries = models
                self._metadata = {"source": source, "models": len(models)}
            self._compiled.clear()
        return len(models)

    # -- lookup --------------------------------------------------------------------------------
    def _resolve(self, model: str) -> str | None:
        table = self._table()
        if model in table:
            return model
        # "provider/name", and "provider/region/name" as LiteLLM reads them: without the leading
        # segments, one at a time.
        rest = model
        while "/" in rest:
            rest = rest.split("/", 1)[1]
            if rest in table:
                return rest
        return None

    def find(self, model: str) -> ModelPrices | None:
        """The compiled prices of ``model`` (by name resolution), or None if it has none."""
        hit = self._compiled.get(model)
        if hit is not None:
            return hit
        if not isinstance(model, str) or not model:
            return None
        key = self._resolve(model)
        if key is None:
            return None
        hit = compile_prices(self._table()[key])
        self._compiled[model] = hit
        return hit

    def max_output_tokens(self, model: str) -> int | None:
        """The model's output token limit (``max_output_tokens``, else ``max_tokens``), if known."""
        key = self._resolve(model)
        entry = self._table().get(key) if key is not None else None
        if entry is None:
            return None
        for name in ("max_output_tokens", "max_tokens"):
            value = entry.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    def prices(self, model: str) -> ModelPrices:
        """The compiled prices of ``model``; UnknownModelError if it has none."""
        hit = self.find(model)
        if hit is not None:
            return hit
        if not isinstance(model, str) or not model:
            raise UnknownModelError(str(model), f"model must be a non-empty string, got {model!r}")
        raise UnknownModelError(model)

    def view(self) -> Mapping[str, Entry]:
        return _ReadOnlyTable(self)


class _ReadOnlyTable(Mapping[str, Entry]):
    """``model_cost``: a live, read-only view of the table."""

    def __init__(self, table: PriceTable) -> None:
        self._owner = table

    def __getitem__(self, model: str) -> Entry:
        return MappingProxyType(self._owner._table()[model])

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner._table())

    def __len__(self) -> int:
        return len(self._owner._table())

    def __contains__(self, model: object) -> bool:
        return model in self._owner._table()

    def __repr__(self) -> str:
        return f"<model_cost: {len(self)} models>"


PRICED_KEYS = ("input_cost_per_token", "output_cost_per_token", "tiered_pricing")


def _models_of(document: object, source: str) -> dict[str, dict[str, Any]]:
    if isinstance(document, Mapping) and isinstance(document.get("models"), Mapping):
        document = document["models"]  # the bundled format: {"metadata": ..., "models": ...}
    if not isinstance(document, Mapping):
        raise InvalidInputError(f"price table from {source} is not a JSON object of models")
    models: dict[str, dict[str, Any]] = {}
    for name, entry in document.items():
        if name == "sample_spec" or not isinstance(entry, Mapping):
            continue
        if any(key in entry for key in PRICED_KEYS):
            models[str(name)] = _validated(str(name), entry)
    if not models:
        raise InvalidInputError(f"price table from {source} prices no models")
    return models


def _validated(name: str, entry: Entry) -> dict[str, Any]:
    for key, value in entry.items():
        if "cost" not in key or value is None or isinstance(value, (Mapping, list)):
            continue
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise InvalidInputError(f"{name}.{key} must be a number, got {value!r}") from None
        to_money(value, f"{name}.{key}")  # raises, naming the key, unless a price >= 0
    return dict(entry)


TABLE = PriceTable()
