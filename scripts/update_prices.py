#!/usr/bin/env python3
"""Regenerate budget_manager/costs/prices.json from LiteLLM's model_prices_and_context_window.json.

    python scripts/update_prices.py PATH_OR_URL [--out budget_manager/costs/prices.json]

Keeps the chat / completion / responses models and, of each entry, only the keys this library
prices with; and LiteLLM's alias rows (``{"alias_of": "other-name"}``) that lead to a kept model,
as they are. Per-token prices are copied unchanged. Offline, the LiteLLM wheel carries a copy:
``pip download litellm --no-deps`` and pass ``litellm/model_prices_and_context_window_backup.json``
from inside it (or the path of an installed litellm).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import sys
from pathlib import Path

MODES = {"chat", "completion", "responses"}
# Structure the pricing reads, and every per-token price (including those of batch and other modes
# this library does not bill, so the table's per-token prices are the reference's, key for key).
KEEP = re.compile(
    r"^(litellm_provider|mode|tiered_pricing|off_peak_pricing|provider_specific_entry"
    r"|max_output_tokens|max_tokens"
    r"|.*(cost_per_\w*token|token_cost)\w*)$"
)
PRICED = ("input_cost_per_token", "output_cost_per_token", "tiered_pricing")
ALIAS = "alias_of"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "budget_manager" / "costs" / "prices.json"


def read_source(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        import requests

        response = requests.get(source, timeout=60)
        response.raise_for_status()
        return response.content
    return Path(source).read_bytes()


def select(table: dict[str, object]) -> dict[str, dict[str, object]]:
    models: dict[str, dict[str, object]] = {}
    for name, entry in table.items():
        if name == "sample_spec" or not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        kept = {k: v for k, v in entry.items() if KEEP.match(k)}
        if any(key in kept for key in PRICED):
            models[name] = kept
    aliases = {
        name: entry[ALIAS]
        for name, entry in table.items()
        if isinstance(entry, dict) and isinstance(entry.get(ALIAS), str)
    }
    for name in aliases:
        end = final_target(aliases, name)
        if end in models:
            models[name] = {ALIAS: aliases[name]}
        elif end is None or end not in table:
            print(f"dropped alias {name!r}: it leads to no entry", file=sys.stderr)
    return dict(sorted(models.items()))


def final_target(aliases: dict[str, str], name: str) -> str | None:
    """The name the chain of aliases from ``name`` ends at; None if it loops."""
    seen = {name}
    while name in aliases:
        name = aliases[name]
        if name in seen:
            return None
        seen.add(name)
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="path or URL of model_prices_and_context_window.json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--label", help="how to name the source in the data file (default: it)")
    args = parser.parse_args(argv)
    raw = read_source(args.source)
    models = select(json.loads(raw))
    aliases = sum(ALIAS in entry for entry in models.values())
    if len(models) - aliases < 100:
        print(
            f"refusing: only {len(models) - aliases} priced chat models in {args.source}",
            file=sys.stderr,
        )
        return 1
    document = {
        "metadata": {
            "source": args.label or args.source,
            "source_sha256": hashlib.sha256(raw).hexdigest(),
            "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "models": len(models) - aliases,
            "aliases": aliases,
        },
        "models": models,
    }
    text = json.dumps(document, indent=1, sort_keys=False) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {len(models) - aliases} models and {aliases} aliases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
