"""The bodies of the service's successful answers that carry records, written with amounts exact."""

from __future__ import annotations

from ..records import UserRecord, quote, to_json


def user_body(user: str, record: UserRecord) -> bytes:
    """``{"status": "success", "user": ..., "data": record}``."""
    return f'{{"status": "success", "user": {quote(user)}, "data": {to_json(record)}}}'.encode()


def user_dict_body(records: dict[str, UserRecord]) -> bytes:
    """``{"status": "success", "data": {user: record, ...}}``."""
    data = ", ".join(f"{quote(u)}: {to_json(r)}" for u, r in records.items())
    return f'{{"status": "success", "data": {{{data}}}}}'.encode()
