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
from ..names import MAX_MODEL_NAME
from .prices import ModelPrices, compile_prices

Entry = Mapping[str, Any]


class PriceTable:
    """Model name -> price entry (LiteLLM's format), with compiled exact prices cached per model.

    An entry ``{"alias_of": "other-name"}`` (LiteLLM's alias rows) is another name of that entry:
    it prices, registers and reads as the entry it names (through chains of aliases).
    """

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
                    self._entries = _checked_aliases(document["models"], "the bundled table")
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
            if ALIAS in entry:
                merged[name] = _validated(name, entry)
                continue
            key = self._resolve(name) or name
            updated = {**table.get(key, {}), **_validated(name, entry)}
            if "input_cost_per_token" not in updated and "output_cost_per_token" not in updated:
                raise InvalidInputError(
                    f"model {name!r} needs input_cost_per_token and/or output_cost_per_token"
                )
            merged[key] = updated
        _checked_aliases({**table, **merged}, "register_model")
        with self._lock:
            table.update(merged)
            self._compiled.clear()

    def load(self, document: object, *, merge: bool, source: str) -> int:
        """Replace (or, with ``merge``, extend) the table with a LiteLLM-format price document,
        validated whole first; returns the number of models read from it."""
        models = _models_of(document, source)
        table = self._table()
        _checked_aliases({**table, **models} if merge else models, source)
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
        """The key of the entry that prices ``model``: the first of its names (it, then without
        its leading segments one at a time, as LiteLLM reads ``provider/name`` and
        ``provider/region/name``) the table holds, followed through aliases."""
        table = self._table()
        for name in _readings(model):
            if name in table:
                return _end(table, name)
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
        """The compiled prices of ``model``; UnknownModelError, naming the closest known names,
        if it has none."""
        hit = self.find(model)
        if hit is not None:
            return hit
        if not isinstance(model, str) or not model:
            raise UnknownModelError(str(model), f"model must be a non-empty string, got {model!r}")
        raise UnknownModelError(model, suggestions=self.closest(model))

    def closest(self, model: str, limit: int = 3) -> list[str]:
        """Up to ``limit`` known names most like ``model`` (or any of its shorter readings),
        best first."""
        if len(model) > MAX_MODEL_NAME:
            return []
        import difflib  # only when an error is raised: keep it out of the import

        names = list(self._table())
        scores: dict[str, float] = {}
        for reading in dict.fromkeys([*_readings(model), *_readings(model.lower())]):
            for name in difflib.get_close_matches(reading, names, n=limit):
                score = difflib.SequenceMatcher(None, reading, name).ratio()
                scores[name] = max(score, scores.get(name, 0.0))
        return sorted(scores, key=lambda name: -scores[name])[:limit]

    def view(self) -> Mapping[str, Entry]:
        return _ReadOnlyTable(self)


class _ReadOnlyTable(Mapping[str, Entry]):
    """``model_cost``: a live, read-only view of the table."""

    def __init__(self, table: PriceTable) -> None:
        self._owner = table

    def __getitem__(self, model: str) -> Entry:
        table = self._owner._table()
        return MappingProxyType(table[_end(table, model)])

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner._table())

    def __len__(self) -> int:
        return len(self._owner._table())

    def __contains__(self, model: object) -> bool:
        return model in self._owner._table()

    def __repr__(self) -> str:
        return f"<model_cost: {len(self)} models>"


PRICED_KEYS = ("input_cost_per_token", "output_cost_per_token", "tiered_pricing")
ALIAS = "alias_of"


def _readings(model: str) -> Iterator[str]:
    """``model``, then without its leading ``/`` segments, one at a time."""
    yield model
    while "/" in model:
        model = model.split("/", 1)[1]
        yield model


def _end(table: Mapping[str, Entry], name: str) -> str:
    """Where the chain of aliases from ``name`` ends: at an entry with prices once the table's
    aliases are checked; before that, possibly at a missing name, or anywhere in a loop."""
    for _ in range(len(table)):
        entry = table.get(name)
        if entry is None or ALIAS not in entry:
            break
        name = entry[ALIAS]
    return name


def _checked_aliases(table: dict[str, dict[str, Any]], source: str) -> dict[str, dict[str, Any]]:
    """``table``, once every alias in it leads to an entry with prices; otherwise
    InvalidInputError naming the first alias that does not."""
    for name, entry in table.items():
        if ALIAS not in entry:
            continue
        end = _end(table, name)
        if end not in table:
            raise InvalidInputError(
                f"{source}: alias {name!r} leads to {end!r}, which has no entry"
            )
        if ALIAS in table[end]:
            raise InvalidInputError(f"{source}: alias {name!r} leads into a loop of aliases")
    return table


def _models_of(document: object, source: str) -> dict[str, dict[str, Any]]:
    if isinstance(document, Mapping) and isinstance(document.get("models"), Mapping):
        document = document["models"]  # the bundled format: {"metadata": ..., "models": ...}
    if not isinstance(document, Mapping):
        raise InvalidInputError(f"price table from {source} is not a JSON object of models")
    models: dict[str, dict[str, Any]] = {}
    unpriced: set[str] = set()
    for name, entry in document.items():
        if name == "sample_spec" or not isinstance(entry, Mapping):
            continue
        if ALIAS in entry or any(key in entry for key in PRICED_KEYS):
            models[str(name)] = _validated(str(name), entry)
        else:
            unpriced.add(str(name))
    # An alias of an entry priced otherwise than per token (images, audio) is left out with it.
    models = {name: entry for name, entry in models.items() if _end(models, name) not in unpriced}
    if not models:
        raise InvalidInputError(f"price table from {source} prices no models")
    return models


def _validated(name: str, entry: Entry) -> dict[str, Any]:
    if ALIAS in entry:
        target = entry[ALIAS]
        if not isinstance(target, str) or not target or target == name:
            raise InvalidInputError(f"{name}.{ALIAS} must name another model, got {target!r}")
        return {ALIAS: target}  # an alias is its target: other keys would never be read
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
