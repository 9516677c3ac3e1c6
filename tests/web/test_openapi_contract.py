"""The HTTP API's contract: /openapi.json says what the server does, and stays compatible.

* The document is valid OpenAPI 3.1; every operation declares its request body, a
  model for each success answer and each error status, all errors with the one error
  body ``{"error": {"code", "message", "hint", "retry_after"?, ...}}``.
* The served document is docs/openapi.json. After a deliberate change, write it with
  ``PROVISIONER_UPDATE_OPENAPI=1 pytest tests/web/test_openapi_contract.py``: it is
  written only when the change keeps every operation, status and field of the
  committed one, or raises the major version (docs/http.md, "Compatibility").
* A request without a valid session gets 401, whatever it carries; OPTIONS and 405
  answers list every method of the path; whole numbers typed with other digits than
  ASCII ones are refused as input errors, never a 500.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from provisioner.db.engine import make_engine
from provisioner.errors import ValidationFailed
from provisioner.numbers import parse_whole_number
from provisioner.security.keystore import MasterKey
from provisioner.services import actors
from provisioner.services.context import Provisioner
from provisioner.services.crm import records
from provisioner.services.provisioning import auth
from provisioner.web import create_app
from tests.conftest import MASTER_KEY
from tests.web.conftest import Site
from tests.web.openapi_compat import breaking_changes, compatible

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
ERROR_REF = "#/components/schemas/ErrorBody"


def served() -> dict[str, Any]:
    """The document as the server builds it (it reads no database)."""
    engine = make_engine("sqlite://")
    app = Provisioner(engine, master_key=MasterKey(MASTER_KEY))
    doc: dict[str, Any] = create_app(app).openapi()
    engine.dispose()
    return json.loads(json.dumps(doc))


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    ]


# --------------------------------------------------------------------------- the document


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = served()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_operation_declares_its_answers_and_errors() -> None:
    doc = served()
    for method, path, op in operations(doc):
        label = f"{method} {path}"
        assert op["operationId"].isidentifier(), label
        responses = op["responses"]
        success = [s for s in responses if s.startswith("2")]
        assert len(success) == 1, label
        content = responses[success[0]]["content"]
        if path.endswith("/export/{kind}"):
            assert set(content) == {"text/csv"}
        else:
            schema = content["application/json"]["schema"]
            assert schema != {"type": "string"}, f"{label}: the answer has no model"
        errors = [s for s in responses if not s.startswith("2")]
        assert "422" in errors, label
        assert "503" in errors, label
        if path != "/api/login":
            assert "401" in errors, label
            assert op["security"] == [{"HTTPBearer": []}], label
        for status in errors:
            error_schema = responses[status]["content"]["application/json"]["schema"]
            assert error_schema == {"$ref": ERROR_REF}, f"{label} {status}"
        no_body = path.endswith(
            (
                "/keys",
                "/revoke",
                "/{transfer_id}/rollback",
                "/logout",
                "/disable",
                "/enable",
                "/password-reset",
                "/dry-run",
            )
        )
        if method in ("POST", "PUT", "PATCH") and not no_body:
            assert "requestBody" in op, f"{label} takes a body"
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert detail["required"] == ["code", "message"]
    assert {"hint", "retry_after", "problems", "request_id"} <= set(detail["properties"])


def test_input_rules_are_in_the_schema() -> None:
    schemas = served()["components"]["schemas"]
    # the required fields of each record type, its fields only
    for type_name, rt in records.TYPES.items():
        title = "".join(p.title() for p in type_name.split("_"))
        create = schemas[f"{title}Create"]
        assert set(create.get("required", [])) == set(rt.required), type_name
        assert set(create["properties"]) == set(rt.fields)
        assert create["additionalProperties"] is False
        assert "required" not in schemas[f"{title}Update"]
    contact = schemas["ContactCreate"]["properties"]
    assert contact["birthday"]["pattern"] == "^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"
    assert contact["name"] == {
        "maxLength": 200,
        "minLength": 1,
        "pattern": "\\S",
        "title": "Name",
        "type": "string",
    }
    assert contact["email"]["anyOf"][0]["pattern"] == r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$"
    params = {
        (p["name"]): p["schema"]
        for _, path, op in operations(served())
        if path.endswith("/search")
        for p in op["parameters"]
    }
    assert params["field"]["items"]["pattern"].startswith("^(name|kana|company|phone")
    assert params["updated_from"]["format"] == "date"
    assert params["sort"]["pattern"] == "^-*(id|name|kana|created_at|updated_at)$"
    sections = schemas["SendIn"]["properties"]["only"]["anyOf"][0]["items"]["enum"]
    assert sections[:3] == ["mode", "labels", "memo_fields"]
    put_config = served()["paths"]["/api/tenants/{tenant}/config"]["put"]
    body = put_config["requestBody"]["content"]["application/json"]["schema"]
    assert {"required": ["labels"]} in body["anyOf"]  # at least one section


def test_create_links_lead_to_show_update_delete_and_the_copy_story_is_linked() -> None:
    doc = served()
    create = doc["paths"]["/api/tenants/{tenant}/records/contact"]["post"]
    assert set(create["responses"]["201"]["links"]) == {
        "show_contact",
        "update_contact",
        "delete_contact",
    }
    key = doc["paths"]["/api/tenants/{tenant}/keys"]["post"]["responses"]["201"]["links"]
    assert key["send"]["requestBody"] == {"key": "$response.body#/key"}
    send = doc["paths"]["/api/tenants/{tenant}/send"]["post"]["responses"]["201"]["links"]
    assert set(send) == {"inbox_show", "inbox_approve", "inbox_reject"}
    approve = doc["paths"]["/api/tenants/{tenant}/inbox/{transfer_id}/approve"]["post"]
    assert set(approve["responses"]["200"]["links"]) == {"inbox_rollback"}


def test_the_served_document_is_the_committed_one() -> None:
    doc = served()
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    refused = compatible(committed, doc)
    if os.environ.get("PROVISIONER_UPDATE_OPENAPI") and not refused:
        COMMITTED.write_text(dump(doc), encoding="utf-8")
        committed = doc
    assert refused == [], (
        "breaking changes without a new major version (info.version):\n" + "\n".join(refused)
    )
    assert dump(doc) == dump(committed), (
        "the API changed: check it and update docs/openapi.json with "
        "PROVISIONER_UPDATE_OPENAPI=1 pytest tests/web/test_openapi_contract.py"
    )


def test_the_compatibility_check_refuses_removals_without_a_major_version() -> None:
    old = served()
    assert breaking_changes(old, old) == []

    removed_op = copy.deepcopy(old)
    del removed_op["paths"]["/api/tenants/{tenant}/keys"]["get"]
    removed_status = copy.deepcopy(old)
    del removed_status["paths"]["/api/tenants/{tenant}/send"]["post"]["responses"]["429"]
    removed_field = copy.deepcopy(old)
    del removed_field["components"]["schemas"]["TransferOut"]["properties"]["bundle_digest"]
    required = copy.deepcopy(old)
    required["components"]["schemas"]["RejectIn"]["required"] = ["reason"]
    assert breaking_changes(old, removed_op) == [
        "GET /api/tenants/{tenant}/keys: operation removed"
    ]
    assert breaking_changes(old, removed_status) == [
        "POST /api/tenants/{tenant}/send: status 429 removed"
    ]
    assert (
        "GET /api/tenants/{tenant}/inbox 200: field [].bundle_digest removed"
        in breaking_changes(old, removed_field)
    )
    assert breaking_changes(old, required) == [
        "POST /api/tenants/{tenant}/inbox/{transfer_id}/reject: request field reason is "
        "newly required"
    ]
    assert compatible(old, removed_op) != []

    bumped = copy.deepcopy(removed_op)
    bumped["info"]["version"] = f"{int(old['info']['version'].split('.')[0]) + 1}.0.0"
    assert compatible(old, bumped) == []

    added = copy.deepcopy(old)  # additions are compatible
    added["components"]["schemas"]["TransferOut"]["properties"]["note"] = {"type": "string"}
    assert compatible(old, added) == []


# --------------------------------------------------------------------------- behaviour


def test_no_session_is_401_before_input_checks_and_rate_limits(site: Site) -> None:
    bad_search = {"limit": "many", "sort": "nonsense", "checked": "x"}
    for headers in ({}, {"Authorization": "Bearer not-a-session"}):
        for method, path, kw in (
            ("GET", "/api/tenants/acme/search", {"params": bad_search}),
            ("GET", "/api/tenants/acme/export/customers", {"params": bad_search}),
            ("GET", "/api/tenants/acme/lookup", {}),
            ("POST", "/api/tenants/acme/records/company", {"json": {"capital": "²"}}),
            ("POST", "/api/tenants/acme/send", {"content": b"{not json"}),
            ("POST", "/api/tenants/acme/receive", {"data": {"x": "no file"}}),
            ("PUT", "/api/tenants/acme/config", {"json": []}),
        ):
            r = site.client.request(method, path, headers=headers, **kw)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["error"]["code"] == "unauthenticated"
            assert r.headers["www-authenticate"] == "Bearer"
    # the same invalid input with a session is the input error
    r = site.call("GET", "/api/tenants/acme/search", "acme-admin", params=bad_search)
    assert r.status_code == 422
    assert r.json()["error"]["problems"]

    # a client that used up its failed redemptions still learns it is not logged in
    key = site.call("POST", "/api/tenants/acme/keys", "acme-admin").json()["key"]
    mistyped = key[:-2] + ("aa" if not key.lower().endswith("aa") else "bb")
    for _ in range(10):
        site.call("POST", "/api/tenants/beta/send", "beta-admin", json={"key": mistyped})
    r = site.call("POST", "/api/tenants/beta/send", "beta-admin", json={"key": mistyped})
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["retry_after"] == int(r.headers["retry-after"])
    assert 0 < error["retry_after"] <= 900
    r = site.client.post("/api/tenants/beta/send", json={"key": mistyped})
    assert r.status_code == 401


def test_options_and_405_list_every_method_of_the_path(site: Site) -> None:
    contact = site.ids["contact"]
    expected = {
        "/api/tenants/acme/config": "GET, HEAD, OPTIONS, PUT",
        "/api/tenants/acme/keys": "GET, HEAD, OPTIONS, POST",
        f"/api/tenants/acme/records/contact/{contact}": "DELETE, GET, HEAD, OPTIONS, PATCH",
        "/api/tenants/acme/send": "OPTIONS, POST",
    }
    for path, allow in expected.items():
        r = site.client.options(path)
        assert r.status_code == 204, path
        assert r.headers["allow"] == allow
    r = site.call("DELETE", "/api/tenants/acme/keys", "acme-admin")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_other_digits_than_ascii_are_input_errors_not_server_errors(site: Site) -> None:
    contact = site.ids["contact"]
    for method, path, body in (
        ("POST", "/api/session/tenant", {"tenant": "¹"}),
        ("POST", "/api/tenants/acme/records/company", {"name": "x", "capital": "²"}),
        ("PATCH", f"/api/tenants/acme/records/contact/{contact}", {"checkboxes": {"²": True}}),
    ):
        r = site.call(method, path, "acme-admin", json=body)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["error"]["code"] == "validation_failed"
    # the services behind the CLI and CSV read them the same way
    with site.app.transaction() as ctx:
        actor = actors.resolve(ctx, "acme-admin", "acme")
        with pytest.raises(Exception, match="no tenant '¹' in your list"):
            auth.pick(auth.tenants_for(ctx, actor.user_id), "¹")
        with pytest.raises(ValidationFailed) as refused:
            records.create(ctx, actor, "company", {"name": "x", "capital": "①0x"})
        assert refused.value.problems == ["capital: expected a whole number, got '①0x'"]
        # full-width digits are the documented width rule of record values (NFKC)
        made = records.create(ctx, actor, "company", {"name": "y", "capital": "１２０"})
        assert made.record["capital"] == 120


def test_parse_whole_number() -> None:
    assert parse_whole_number("0042") == 42
    assert parse_whole_number(" 7 ") == 7
    for text in ("²", "¹²", "①", "٣", "१", "", "-", "1.5", "+3", "1_000", "--5"):
        assert parse_whole_number(text) is None, text
    assert parse_whole_number("-5") is None
    assert parse_whole_number("-5", signed=True) == -5
    assert parse_whole_number("１２", width=True) == 12
    assert parse_whole_number("１２") is None
    assert parse_whole_number("٣", width=True) is None


def test_the_curl_lines_of_docs_http_name_documented_operations() -> None:
    doc = served()
    text = (COMMITTED.parent / "http.md").read_text(encoding="utf-8")
    block = text.split("## The copy story with curl", 1)[1].split("```sh\n", 1)[1]
    block = block.split("```", 1)[0].replace("\\\n", " ")
    calls = []
    for line in block.splitlines():
        for command in re.findall(r"curl [^|)]*", line):
            method = re.search(r"-X (\w+)", command)
            verb = method.group(1) if method else ("POST" if " -d " in command else "GET")
            path = re.search(r"\$API(/\S+)", command)
            assert path is not None, command
            template = re.sub(
                r"/tenants/(acme|beta)",
                "/tenants/{tenant}",
                path.group(1).replace("$ID", "{transfer_id}"),
            )
            calls.append(f"{verb} /api{template}")
    documented = {f"{m} {p}" for m, p, _ in operations(doc)}
    assert calls == [
        "POST /api/login",
        "POST /api/tenants/{tenant}/keys",
        "POST /api/login",
        "POST /api/tenants/{tenant}/send",
        "GET /api/tenants/{tenant}/inbox/{transfer_id}",
        "POST /api/tenants/{tenant}/inbox/{transfer_id}/approve",
        "POST /api/tenants/{tenant}/inbox/{transfer_id}/rollback",
    ]
    assert set(calls) <= documented
