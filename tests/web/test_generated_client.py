"""A Python client generated from /openapi.json runs the copy story and a CRM flow.

As a partner would: ``openapi-python-client`` (the version pinned in pyproject.toml)
generates a client from the document a live server (uvicorn, as ``provisioner serve``)
serves, into a temporary directory; the test then drives the server with it and reads
every answer through the generated models: key, send, inbox show, approve, rollback;
create, search, lookup, update; and an error body.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.support import labelled
from tests.web.conftest import PASSWORD, Site
from tests.web.live import serving

PACKAGE = "provisioner_api_client"
CONFIG = f"""\
package_name_override: {PACKAGE}
project_name_override: provisioner-api-client
post_hooks: []
"""
TIMEOUT = httpx.Timeout(60)  # (a busy test machine)


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Any]:
    """A loader: ``generated(url)`` writes the client of ``url``/openapi.json, imports it."""

    def load(url: str) -> ModuleType:
        (tmp_path / "openapi.json").write_bytes(
            httpx.get(f"{url}/openapi.json", timeout=60).content
        )
        (tmp_path / "config.yaml").write_text(CONFIG)
        made = subprocess.run(
            [
                str(Path(sys.executable).with_name("openapi-python-client")),
                "generate",
                "--path",
                "openapi.json",
                "--output-path",
                PACKAGE,
                "--meta",
                "none",
                "--config",
                "config.yaml",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        assert "Warning" not in made.stdout + made.stderr, made.stdout + made.stderr
        sys.path.insert(0, str(tmp_path))
        return importlib.import_module(PACKAGE)

    yield load
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_the_generated_client_runs_the_copy_story_and_a_crm_flow(
    site: Site, generated: Any
) -> None:
    site.world.set_config("beta", labelled(site.world.config("beta"), 2, "お中元"))
    with serving(site.app) as url:
        package = generated(url)
        models = _module("models")
        session = _module("api.session.login")

        def logged_in(login: str) -> Any:
            with package.Client(base_url=url, timeout=TIMEOUT) as anonymous:
                out = session.sync(
                    client=anonymous, body=models.LoginIn(login=login, password=PASSWORD)
                )
            assert isinstance(out, models.LoginOut), out
            return package.AuthenticatedClient(base_url=url, token=out.token, timeout=TIMEOUT)

        with logged_in("acme-admin") as target, logged_in("beta-admin") as source:
            _copy_story_and_crm_flow(models, target, source)


def _copy_story_and_crm_flow(models: Any, target: Any, source: Any) -> None:
    keys = _module("api.copy_keys.key_generate")
    send = _module("api.transfers.send")
    show = _module("api.transfers.inbox_show")
    approve = _module("api.transfers.inbox_approve")
    rollback = _module("api.transfers.inbox_rollback")

    # the copy story: key (target) -> send (source) -> inbox -> approve -> rollback
    key = keys.sync(tenant="acme", client=target)
    assert isinstance(key, models.NewKeyOut)
    sent = send.sync(tenant="current", client=source, body=models.SendIn(key=key.key))
    assert isinstance(sent, models.SentOut), sent
    assert (sent.target, sent.source_tenant) == ("acme", "beta")
    plan = show.sync(tenant="acme", transfer_id=sent.id, client=target)
    assert isinstance(plan, models.PlanOut)
    assert plan.status == models.PlanOutStatus.PENDING
    assert plan.summary.additional_properties  # at least the changed label
    decision = approve.sync(
        tenant="acme",
        transfer_id=sent.id,
        client=target,
        body=models.ApproveIn(mode=models.ApproveInModeType0.REPLACE),
    )
    assert isinstance(decision, models.DecisionOut), decision
    assert decision.outcome == "applied"
    assert isinstance(decision.version, int)
    undone = rollback.sync(tenant="acme", transfer_id=sent.id, client=target)
    assert isinstance(undone, models.TransferRollbackOut), undone
    assert undone.transfer == sent.id
    assert isinstance(undone.version, int)
    assert undone.version > decision.version

    # a CRM flow: create, search, lookup, update
    create = _module("api.records.create_contact")
    search = _module("api.records.search_customers")
    lookup = _module("api.records.lookup")
    update = _module("api.records.update_contact")
    made = create.sync(
        tenant="acme",
        client=target,
        body=models.ContactCreate(name="鈴木 一郎", kana="スズキ イチロウ", phone="045-222-3333"),
    )
    assert isinstance(made, models.ContactSaved), made
    contact = made.record
    assert isinstance(contact, models.Contact)
    assert contact.name == "鈴木 一郎"
    found = search.sync(tenant="acme", client=target, q="スズキ")
    assert isinstance(found, models.SearchOut)
    assert found.total == 1
    assert found.items[0].additional_properties["id"] == contact.id
    card = lookup.sync(tenant="acme", client=target, phone="０４５２２２３３３３")
    assert isinstance(card, models.CardOut), card
    assert card.contact is not None
    assert card.contact.additional_properties["id"] == contact.id
    changed = update.sync(
        tenant="acme", record_id=contact.id, client=target, body=models.ContactUpdate(title="部長")
    )
    assert isinstance(changed, models.ContactSaved)
    assert changed.record.title == "部長"

    # errors come back as the one error model
    missing = _module("api.records.show_contact").sync(
        tenant="acme", record_id=contact.id + 1000, client=target
    )
    assert isinstance(missing, models.ErrorBody)
    assert missing.error.code == "not_found"
    outsider = _module("api.records.show_contact").sync(
        tenant="acme", record_id=contact.id, client=source
    )
    assert isinstance(outsider, models.ErrorBody)
    assert outsider.error.code == "permission_denied"
