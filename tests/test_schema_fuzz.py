"""schemathesis against the service's own OpenAPI schema, in process: every operation, generated
valid and invalid inputs; no 5xx, and every answer conforms to the schema."""

from __future__ import annotations

import tempfile

import schemathesis
from hypothesis import HealthCheck, settings

from budget_manager.server import create_app

KEY = "fuzz-key"
_DB = tempfile.mkdtemp(prefix="bm-fuzz-")
app = create_app(store_url=f"sqlite:///{_DB}/fuzz.db", api_keys=[KEY])
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", app, headers={"Authorization": f"Bearer {KEY}"}
)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    if "Authorization" in (case.headers or {}):  # a real key, so the rest of the case is tried
        case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"})
    else:  # a case made without the header it requires: it must be refused
        case.call_and_validate()
