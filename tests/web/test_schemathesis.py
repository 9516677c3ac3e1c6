"""schemathesis with every check against a live server, logged in as two tenants' admins.

Every phase runs (examples, coverage, fuzzing, stateful): generated requests to every
operation, negative ones included, and the stateful sequences that follow the
document's links (create -> show -> update -> delete a record; key -> send -> inbox
-> approve -> rollback). All checks are on, among them ``positive_data_acceptance``
(a request valid by the document is accepted), ``negative_data_rejection``,
``response_schema_conformance``, ``unsupported_method``, ``ignored_auth`` and
``object_level_authorization``: acme's admin and beta's admin are peers, and an object
one of them reads must stay out of the other's reach.

Bounded in the default suite (``SCHEMATHESIS_EXAMPLES``, default 5 per operation);
``.ci/run`` sets more. Requests name the tenant ``current`` (each admin's own), as a
random slug only meets the membership check (covered by test_api's matrix).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.web.conftest import Site
from tests.web.live import serving

ROOT = Path(__file__).resolve().parents[2]
#: ``SCHEMATHESIS_EXAMPLES=N``: the larger run (.ci/run): N examples per operation, every
#: operation, SQLite and PostgreSQL. Without it, the bounded run of the default suite:
#: SQLite, 2 examples, and of the record operations made per record type by one function
#: (api._record_routes) those of the contact and the activity only; no export.
FULL = "SCHEMATHESIS_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "2"))
#: stateful scenarios (sequences along the links)
STATEFUL = 5 * EXAMPLES if FULL else 10
BOUNDED = [
    "--exclude-operation-id-regex",
    r"^(create|show|update|delete)_(?!contact$|activity$)|^list_contact_(?!activity$)"
    r"|^export$",
]  # (export takes search's parameters: the most coverage cases)
#: the request would end the session the run uses or take the admin's rights away
#: (logout; disabling, removing, demoting a user or resetting their password, which
#: ends their sessions: test_auth and tests/web/test_users_api.py cover them)
SKIPPED = ("logout", "user_disable", "user_remove", "user_password_reset", "user_role")


def _auth_document(site: Site) -> dict[str, object]:
    """Web Fuzzing Commons authentication: the two admins' bearer tokens."""
    return {
        "auth": [
            {
                "name": login,
                "fixedHeaders": [
                    {"name": "Authorization", "value": f"Bearer {site.tokens[login]}"}
                ],
            }
            for login in ("acme-admin", "beta-admin")
        ]
    }


#: Operations whose input is also checked against the tenant's data, which no schema can
#: say: record values against the tenant's configuration (picklists, classifications,
#: enabled checkboxes, custom databases, external systems, individual mode) and other
#: records (references, unique product codes); a configuration's sections against each
#: other; a CSV file's and a bundle file's contents. And search and export: ``checked``
#: and ``unchecked`` may not name the same checkbox, a rule across two query parameters
#: that a schema cannot say. So do a user's role and department, a blueprint move, a
#: workflow's state and a call note (configured roles, departments, states, workflows,
#: calls). A valid-by-the-document request may get 422 there, with the
#: problems listed; everywhere else it may not.
DATA_CHECKED = (
    r"^(create|update)_|^(config_set|import_customers|import_inquiries|receive"
    r"|search_customers|export|user_role|user_department|department_add"
    r"|record_transition|workflow_state|call_note)$"
)

CONFIG = """\
[auth.wfc]
path = "{auth}"
peers = ["acme-admin", "beta-admin"]

[phases.stateful]
generation.max-examples = {stateful}

[[operations]]
include-operation-id-regex = '{data_checked}'
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


def test_schemathesis_every_check(site: Site, tmp_path: Path) -> None:
    if not FULL and site.app.engine.dialect.name != "sqlite":
        pytest.skip("the bounded run is on SQLite; SCHEMATHESIS_EXAMPLES=N runs both")
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps(_auth_document(site)))
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(auth=auth, data_checked=DATA_CHECKED, stateful=STATEFUL))
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.web.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    with serving(site.app) as url:
        started = time.monotonic()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(config),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                "17",
                "--workers",
                "1",
                "--no-color",
                "--warnings",
                "off",
                *[arg for op in SKIPPED for arg in ("--exclude-operation-id", op)],
                *([] if FULL else BOUNDED),
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=3600,
        )
        took = time.monotonic() - started
    output = run.stdout + run.stderr
    saved = tmp_path / "output.txt"
    saved.write_text(output)
    print(output[-3000:], f"\n({took:.0f} s; the whole output: {saved})")
    assert run.returncode == 0, output[-20000:]
    # and the sessions are still usable after all of it
    for login in ("acme-admin", "beta-admin"):
        assert site.call("GET", "/api/session", login).status_code == 200
