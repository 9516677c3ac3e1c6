"""The API lookup is the metered CTI call (issue 12); notes typed during the call."""

from __future__ import annotations

from sqlalchemy import event, select

from provisioner.db.provisioning_models import CallRecord
from tests.web.conftest import Site


def _calls(site: Site) -> list[tuple[str | None, int | None]]:
    with site.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        return [
            (c.call_ref, c.contact_id)
            for c in ctx.session.scalars(select(CallRecord).order_by(CallRecord.id))
        ]


def test_api_lookup_is_the_metered_call(site: Site) -> None:
    for _ in range(2):
        r = site.call(
            "GET",
            "/api/tenants/acme/lookup",
            "acme-gen",
            params={"phone": "03-1234-5678", "call_id": "pbx-3"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["call"]["ref"] == "pbx-3"
    missing = site.call(
        "GET",
        "/api/tenants/acme/lookup",
        "acme-gen",
        params={"phone": "06-4444-4444", "call_id": "pbx-4"},
    )
    assert missing.status_code == 404
    assert _calls(site) == [("pbx-3", site.ids["contact"]), ("pbx-4", None)]
    noted = site.call(
        "POST", "/api/tenants/acme/calls/pbx-3/note", "acme-gen", json={"note": "資料送付"}
    )
    assert noted.status_code == 200, noted.text
    assert noted.json()["contact_id"] == site.ids["contact"]
    acts = site.call(
        "GET", f"/api/tenants/acme/contacts/{site.ids['contact']}/activity", "acme-gen"
    ).json()
    assert "資料送付" in [a["content"] for a in acts]
    assert (
        site.call(
            "POST", "/api/tenants/acme/calls/nope/note", "acme-gen", json={"note": "x"}
        ).status_code
        == 404
    )


def test_a_lookup_is_one_transaction(site: Site) -> None:
    """Session check, lookup and call record on one connection checkout (one transaction),
    whether the caller is a customer (200) or not (404: the call recorded all the same)."""
    checkouts: list[object] = []

    def checked_out(*_: object) -> None:
        checkouts.append(_)

    event.listen(site.app.engine, "checkout", checked_out)
    try:
        for phone, status in (("03-1234-5678", 200), ("06-4444-4444", 404)):
            checkouts.clear()
            r = site.call("GET", "/api/tenants/acme/lookup", "acme-gen", params={"phone": phone})
            assert r.status_code == status, r.text
            assert len(checkouts) == 1
    finally:
        event.remove(site.app.engine, "checkout", checked_out)
    assert _calls(site) == [(None, site.ids["contact"]), (None, None)]
