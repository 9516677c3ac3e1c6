"""schemathesis over /openapi.json: generated requests to every operation, no server error.

Requests come with a logged-in admin's token; half of them are aimed at the
admin's own tenant (``current``) so that they reach the services rather than
stopping at the tenant check. Bounded: a fixed number of examples per operation.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.conftest import Site

EXAMPLES = 8
SKIP = {"POST /api/logout"}  # would end the session the other requests use


def _aim(case: Any, own: bool) -> Any:
    if own and "tenant" in (case.path_parameters or {}):
        case.path_parameters["tenant"] = "current"
    return case


@pytest.mark.slow  # ~10 s of CPU per database; over 20 s wall on a busy machine
def test_no_server_errors(site: Site) -> None:
    transfer = site.call("POST", "/api/tenants/acme/keys", "acme-admin").json()
    assert transfer["id"]
    schema = schemathesis.openapi.from_asgi("/openapi.json", site.client.app)
    headers = {"Authorization": f"Bearer {site.tokens['acme-admin']}"}
    errors: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        if label not in SKIP:
            _fuzz(operation, label, headers, errors)
    assert errors == [], "\n".join(errors[:20])
    # and the session is still usable after all of it
    assert site.call("GET", "/api/session", "acme-admin").status_code == 200


def _fuzz(operation: Any, label: str, headers: dict[str, str], errors: list[str]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(), own=st.booleans())
    def check(case: Any, own: bool) -> None:
        case = _aim(case, own)
        response = case.call(headers=headers)
        if response.status_code >= 500:
            errors.append(f"{label} -> {response.status_code}: {response.text[:300]}\n"
                          f"  path={case.path_parameters} query={case.query} "
                          f"body={str(case.body)[:200]}")

    check()
