"""The read paths the call centre hits hardest: lookup and search in read-only transactions.

* a read-only transaction begins DEFERRED on SQLite, so it neither waits for nor
  blocks a writer; it refuses to change rows;
* the API lookup is the metered call: its session check, lookup, call record and
  logged personal-information view are one transaction, committed before the card
  is sent; if it fails, nothing of it is kept and no card is sent; concurrent
  lookups are each recorded once;
* a service lookup in a read-only transaction logs its view after it;
* the one-statement session check keeps every refusal of the two it replaced.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import delete, event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from provisioner.db.crm_models import CrmAccess
from provisioner.db.models import Membership, Tenant, User
from provisioner.db.provisioning_models import CallBytes, CallRecord
from provisioner.services import actors
from provisioner.services.context import Provisioner
from provisioner.services.crm import records, search
from provisioner.services.provisioning import call_usage, groups
from tests.web.conftest import Site


def _views(app: Provisioner) -> list[tuple[str, str, str]]:
    with app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        rows = ctx.session.scalars(
            select(CrmAccess).where(CrmAccess.kind == "personal_info_view").order_by(CrmAccess.id)
        )
        return [(r.actor, r.kind, r.subject) for r in rows]


def test_lookup_logs_a_personal_info_view_before_answering(site: Site) -> None:
    r = site.call(
        "POST",
        "/api/tenants/acme/records/contact",
        "acme-gen",
        json={"name": "要記録 花子", "phone": "06-1111-2222", "log_personal_info": True},
    )
    assert r.status_code == 201, r.text
    logged = r.json()["record"]["id"]
    plain = site.call(
        "GET", "/api/tenants/acme/lookup", "acme-ro", params={"phone": "03-1234-5678"}
    )
    assert plain.status_code == 200
    assert _views(site.app) == []  # not a logged contact, logging off for the tenant
    card = site.call(
        "GET", "/api/tenants/acme/lookup", "acme-ro", params={"phone": "０６１１１１２２２２"}
    )
    assert card.status_code == 200, card.text
    assert card.json()["contact"]["id"] == logged
    assert _views(site.app) == [("acme-ro", "personal_info_view", f"contact:{logged}")]


def _call_figures(app: Provisioner) -> list[tuple[int, int, int]]:
    """(tenant, calls, note bytes) as maintained (call_bytes), and the calls recorded."""
    with app.transaction() as ctx, ctx.operator("read"):  # the test inspects every tenant
        kept = ctx.session.execute(select(CallBytes.tenant_id, CallBytes.calls)).all()
        recorded = ctx.session.execute(
            select(CallRecord.tenant_id, func.count()).group_by(CallRecord.tenant_id)
        ).all()
    return sorted((t, n, 0) for t, n in kept) + sorted((t, n, 1) for t, n in recorded)


def test_a_lookup_failing_after_its_call_was_written_records_nothing(site: Site) -> None:
    """The session check, the lookup, the call and the logged view are one transaction:
    a failure after the call was written (here at the commit) leaves no call, no view
    and no card -- the unknown caller's call included, which only a 404 keeps."""
    r = site.call(
        "POST",
        "/api/tenants/acme/records/contact",
        "acme-gen",
        json={"name": "要記録 次郎", "phone": "06-3333-4444", "log_personal_info": True},
    )
    assert r.status_code == 201, r.text
    before = _call_figures(site.app)
    seen: list[int] = []

    def locked(session: Session) -> None:
        conn = session.connection()
        seen.append(conn.execute(select(func.count()).select_from(CallRecord)).scalar_one())
        raise OperationalError("COMMIT", {}, Exception("database is locked"))

    event.listen(Session, "before_commit", locked)
    try:
        card = site.call(
            "GET", "/api/tenants/acme/lookup", "acme-ro", params={"phone": "0633334444"}
        )
        unknown = site.call(
            "GET", "/api/tenants/acme/lookup", "acme-ro", params={"phone": "0699998888"}
        )
    finally:
        event.remove(Session, "before_commit", locked)
    assert card.status_code == 503
    assert card.json()["error"]["code"] == "database_error"
    assert "要記録" not in card.text
    assert unknown.status_code == 503
    assert seen == [1, 1]  # each failed with its call written, in its transaction
    assert _call_figures(site.app) == before
    assert _views(site.app) == []
    ok = site.call("GET", "/api/tenants/acme/lookup", "acme-ro", params={"phone": "0633334444"})
    assert ok.status_code == 200
    assert ok.json()["call"]["id"] is not None
    assert len(_views(site.app)) == 1
    assert [n for _, n, _ in _call_figures(site.app)] == [1, 1]


def test_concurrent_lookups_are_each_recorded_once(site: Site) -> None:
    """Lookups at the same time, on one tenant: every one is a call, with or without a
    call id, and the tenant's maintained figures equal the count."""
    phones = ["03-1234-5678", "0312345678", "06-0000-0000"]

    def pop(i: int) -> int:
        params = {"phone": phones[i % 3]} | ({"call_id": f"pbx-{i}"} if i % 2 else {})
        response = site.call("GET", "/api/tenants/acme/lookup", "acme-gen", params=params)
        return int(response.status_code)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(pop, range(24)))
    assert sorted(statuses) == [200] * 16 + [404] * 8
    acme = site.world.actor("acme").tenant_id
    assert _call_figures(site.app) == [(acme, 24, 0), (acme, 24, 1)]
    with site.app.transaction() as ctx, ctx.operator("read"):
        assert call_usage.stored(ctx.session.connection(), acme) == call_usage.recount(
            ctx.session.connection(), acme
        )


def test_service_lookup_in_a_read_only_transaction_logs_after_it(site: Site) -> None:
    app = site.app
    with app.transaction() as ctx:
        admin = actors.resolve(ctx, "acme-admin", "acme")
        saved = records.create(
            ctx,
            admin,
            "contact",
            {"name": "要記録", "phone": "0455556666", "log_personal_info": True},
        )
    with app.transaction(read_only=True) as ctx:
        card = search.lookup(ctx, admin, "045-555-6666")
        assert _views(app) == []  # not yet: written on the way out, after the reads
    assert card["contact"]["id"] == saved.record["id"]
    assert _views(app) == [("acme-admin", "personal_info_view", f"contact:{saved.record['id']}")]


def test_read_only_transaction_refuses_changes(site: Site) -> None:
    app = site.app

    def rename() -> None:
        with app.transaction(read_only=True) as ctx:
            tenant = ctx.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()
            tenant.name = "changed"

    with pytest.raises(RuntimeError, match="read-only"):
        rename()
    with app.transaction() as ctx:
        assert (
            ctx.session.scalars(select(Tenant.name).where(Tenant.slug == "acme")).one() != "changed"
        )


def test_sqlite_readers_do_not_wait_for_a_writer(site: Site) -> None:
    app = site.app
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's locking; PostgreSQL readers never wait for writers")
    answered: list[int] = []

    def read() -> None:  # (a lookup is the metered call since issue 12: it writes)
        answered.append(
            site.call(
                "GET", "/api/tenants/acme/search", "acme-ro", params={"q": "山田"}
            ).status_code
        )

    with app.transaction() as writer:  # BEGIN IMMEDIATE: holds the write lock
        writer.session.execute(text("UPDATE tenants SET name = name WHERE slug = 'acme'"))
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(10)  # an IMMEDIATE reader would sleep in the busy handler (60 s)
        assert answered == [200], "the search waited for the writer"


def test_session_check_refusals(site: Site) -> None:
    app = site.app
    ok = site.call("GET", "/api/tenants/acme/lookup", "acme-ro", params={"phone": "0312345678"})
    assert ok.status_code == 200
    bogus = site.client.get(
        "/api/tenants/acme/lookup",
        params={"phone": "0312345678"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert bogus.status_code == 401
    assert "session has ended" in bogus.json()["error"]["message"]
    # acme-ro loses its membership of its selected tenant (an operator's change)
    with app.transaction() as ctx, ctx.operator("write"):
        user_id = ctx.session.scalars(select(User.id).where(User.login == "acme-ro")).one()
        ctx.session.execute(delete(Membership).where(Membership.user_id == user_id))
    gone = site.call(
        "GET", "/api/tenants/current/lookup", "acme-ro", params={"phone": "0312345678"}
    )
    assert gone.status_code == 401
    assert "no longer have access" in gone.json()["error"]["message"]
    with app.transaction() as ctx:  # beta is cancelled: its admin's session leads nowhere
        groups.cancel_tenant(ctx, "beta")
    cancelled = site.call("GET", "/api/tenants/current/search", "beta-admin", params={"q": "x"})
    assert cancelled.status_code == 401
    logout = site.call("POST", "/api/logout", "acme-gen")
    assert logout.status_code == 200
    ended = site.call("GET", "/api/tenants/acme/search", "acme-gen", params={"q": "山田"})
    assert ended.status_code == 401
