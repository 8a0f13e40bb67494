"""The bodies of the service's successful answers that carry records and holds, written with
amounts exact."""

from __future__ import annotations

import json
from dataclasses import asdict
from decimal import Decimal

from ..history import HistoryEvent
from ..ledger import Outcome
from ..money import to_text
from ..records import HoldRecord, UserRecord, hold_to_json, quote, to_json


def user_body(user: str, record: UserRecord) -> bytes:
    """``{"status": "success", "user": ..., "data": record}``."""
    return f'{{"status": "success", "user": {quote(user)}, "data": {to_json(record)}}}'.encode()


def outcome_body(user: str, outcome: Outcome, record: UserRecord | None) -> bytes:
    """The answer to an operation: ``user`` and ``data`` (``record``, the user's record as of
    now), and when there are any, the ``hold``, the budgets whose period ``rolled``, the
    ``alerts`` it crossed, and ``replayed`` for an idempotent repeat."""
    parts = [f'"status": "success", "user": {quote(user)}']
    if record is not None:
        parts.append(f'"data": {to_json(record)}')
    if outcome.hold is not None:
        parts.append(f'"hold": {hold_to_json(outcome.hold)}')
    if outcome.rolled:
        parts.append(f'"rolled": {json.dumps(list(outcome.rolled))}')
    if outcome.alerts:
        parts.append(f'"alerts": {json.dumps([asdict(a) for a in outcome.alerts])}')
    if outcome.replayed:
        parts.append('"replayed": true')
    return ("{" + ", ".join(parts) + "}").encode()


def holds_body(holds: list[HoldRecord], held: str | None, available: str | None) -> bytes:
    """``{"status": "success", "holds": [...]}``, with ``held`` and ``available`` for one user."""
    body = '{"status": "success", "holds": [' + ", ".join(hold_to_json(h) for h in holds) + "]"
    if held is not None:
        body += f', "held": "{held}", "available": "{available}"'
    return (body + "}").encode()


def user_dict_body(records: dict[str, UserRecord]) -> bytes:
    """``{"status": "success", "data": {user: record, ...}}``."""
    data = ", ".join(f"{quote(u)}: {to_json(r)}" for u, r in records.items())
    return f'{{"status": "success", "data": {{{data}}}}}'.encode()


def history_body(events: list[HistoryEvent]) -> bytes:
    """``{"status": "success", "events": [...]}``, oldest first, amounts exact."""
    return ('{"status": "success", "events": [' + ", ".join(map(_event, events)) + "]}").encode()


def report_body(by: str, spend: dict[str, Decimal]) -> bytes:
    """``{"status": "success", "by": ..., "spend": {key: amount}}``, amounts exact."""
    totals = ", ".join(f"{quote(k)}: {to_text(v)}" for k, v in spend.items())
    return f'{{"status": "success", "by": {quote(by)}, "spend": {{{totals}}}}}'.encode()


def _event(event: HistoryEvent) -> str:
    amount = "null" if event.amount is None else to_text(event.amount)
    return (
        f'{{"time": {event.time!r}, "kind": {quote(event.kind)}, "user": {quote(event.user)}, '
        f'"model": {json.dumps(event.model)}, "cost": {to_text(event.cost)}, '
        f'"amount": {amount}, "tokens": {json.dumps(event.tokens)}, '
        f'"hold_id": {json.dumps(event.hold_id)}, "window_start": {json.dumps(event.window_start)}, '
        f'"window_end": {json.dumps(event.window_end)}}}'
    )
