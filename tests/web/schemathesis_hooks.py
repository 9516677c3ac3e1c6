"""schemathesis hooks of tests/web/test_schemathesis.py (loaded with SCHEMATHESIS_HOOKS).

Generated requests name the tenant ``current`` (the identity's own tenant): a random
slug only meets the membership check. Sending names tenant ``2`` instead, the second
tenant in acme's admin's list (acme-tokyo): a tenant cannot send to itself, so the
copy story (key in acme -> send from acme-tokyo -> acme's inbox -> approve -> rollback)
runs as the links describe it. Switching tenant selects the first one of the list
again, so that ``current`` stays put. A tenant value that breaks the path's pattern (a
negative case) is kept, so that its rejection is still checked.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SEND = "/api/tenants/{tenant}/send"


@schemathesis.hook
def map_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    tenant = (path_parameters or {}).get("tenant")
    if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
        return path_parameters
    operation = getattr(context, "operation", None)
    sending = operation is not None and operation.path == SEND
    return {**(path_parameters or {}), "tenant": "2" if sending else "current"}


SWITCH = "/api/session/tenant"


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    """Switching tenant selects the first of the list (where the session started): a
    switch in the middle of a stateful sequence would move ``current`` under it."""
    operation = getattr(context, "operation", None)
    if (
        operation is not None
        and operation.path == SWITCH
        and isinstance(body, dict)
        and isinstance(body.get("tenant"), str)
        and TENANT.fullmatch(body["tenant"])
    ):
        return {**body, "tenant": "1"}
    return body
