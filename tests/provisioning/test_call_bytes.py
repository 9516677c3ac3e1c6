"""The call records' disk usage is maintained (``call_bytes``), not summed per check.

Every write of call records -- a call recorded (also after a read-only transaction),
the same call popped up again, a note typed during the call, a note rewritten, a
call deleted -- keeps the tenant's (calls, note bytes) in its transaction. After
each step of a sequence on two tenants the maintained figures equal a scan of
``call_records`` (what disk usage summed before), and disk usage is the same
number it was. ``reindex --check`` finds a figure an older release (or a write
past the services) left wrong; a rebuild corrects it. Migration 0022 backfills
the figures of the calls already recorded, and its downgrade drops them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import delete, select, text, update

from provisioner.clock import parse_instant
from provisioner.db import migrate
from provisioner.db.engine import make_engine
from provisioner.db.provisioning_models import CallBytes, CallRecord
from provisioner.errors import NotFound, QuotaExceeded
from provisioner.services import actors, reindex
from provisioner.services.context import Provisioner
from provisioner.services.crm import records
from provisioner.services.provisioning import billing, call_usage, metering, quotas
from provisioner.services.transaction import Context
from tests.support import World

TUESDAY_10 = parse_instant("2026-11-24T01:00:00Z")  # Tuesday 10:00 in Tokyo
NOTE = "資料送付のご依頼（カタログ２冊）"  # multi-byte: 3 bytes a character


def _scanned(ctx: Context, tenant_id: int) -> int:
    """Disk usage of the tenant's calls as it was computed before: a scan."""
    calls, notes = call_usage.recount(ctx.session.connection(), tenant_id)
    return calls * quotas.CALL_RECORD_BYTES + notes


def _check(app: Provisioner, ids: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Maintained == scanned for every tenant, and disk usage's statement counts the
    scanned bytes for the calls; returns the figures."""
    out = {}
    for slug, tenant_id in ids.items():
        with app.transaction() as ctx:
            ctx.enter_tenant(tenant_id)
            conn = ctx.session.connection()
            stored = call_usage.stored(conn, tenant_id)
            assert stored == call_usage.recount(conn, tenant_id), slug
            row = conn.execute(quotas.USAGE, {"tenant_id": tenant_id}).one()
            assert row.used_calls == _scanned(ctx, tenant_id), slug
            out[slug] = stored
    return out


@pytest.fixture
def two(app: Provisioner, world: World) -> dict[str, int]:
    """Tenants 'center' (a customer 山田 at 03-1111-1111) and 'other', each with an operator."""
    for slug in ("center", "other"):
        world.tenant(slug, users={f"{slug}-op": "general"})
    with app.transaction() as ctx:
        admin = actors.resolve(ctx, "center-admin", "center")
        records.create(ctx, admin, "contact", {"name": "山田 花子", "phone": "03-1111-1111"})
    return {slug: world.tenant_row(slug).id for slug in ("center", "other")}


def _as(app: Provisioner, slug: str, step: Callable[[Context, actors.Actor], object]) -> None:
    with app.transaction() as ctx:
        step(ctx, actors.resolve(ctx, f"{slug}-op", slug))


def test_maintained_figures_equal_the_scan_after_every_write(
    app: Provisioner, two: dict[str, int]
) -> None:
    assert _check(app, two) == {"center": (0, 0), "other": (0, 0)}

    def pop(ref: str | None, number: str = "03-1111-1111") -> None:
        with app.transaction() as ctx:
            actor = actors.resolve(ctx, "center-op", "center")
            if number == "03-1111-1111":
                metering.screen_pop(ctx, actor, number, call_ref=ref, at=TUESDAY_10)
                return
            with pytest.raises(NotFound):  # an unknown caller: recorded, then "not found"
                metering.screen_pop(ctx, actor, number, call_ref=ref, at=TUESDAY_10)

    def note(ref: str, text: str) -> Callable[[], object]:
        return lambda: _as(
            app,
            "center",
            lambda c, a: metering.add_contact_history(c, a, None, text, call_ref=ref),
        )

    def other_call() -> None:
        _as(app, "other", lambda c, a: metering.record_call(c, a, "090-1234-5678"))

    steps: list[tuple[str, Callable[[], object], int]] = [  # (step, center's calls after)
        ("a screen pop", lambda: pop("pbx-1"), 1),
        ("the same call again", lambda: pop("pbx-1"), 1),
        ("another call", lambda: pop("pbx-2"), 2),
        ("an unknown caller", lambda: pop("pbx-3", "06-4444-4444"), 3),
        ("a call without id", lambda: pop(None), 4),
        ("a call of the other tenant", other_call, 4),
        ("a note", note("pbx-1", NOTE), 4),
        ("a second note on the same call", note("pbx-1", "折り返し"), 4),
        ("a note of an unknown caller", note("pbx-3", "間違い電話"), 4),
    ]
    for name, step, calls in steps:
        step()
        assert _check(app, two)["center"][0] == calls, name
    figures = _check(app, two)
    notes = (NOTE + "\n" + "折り返し").encode()
    assert figures["center"] == (4, len(notes) + len("間違い電話".encode()))
    assert figures["other"] == (1, 0)

    center = two["center"]
    with app.transaction() as ctx:  # a note rewritten and a new call with a note, one flush
        ctx.enter_tenant(center)
        row = ctx.session.scalar(select(CallRecord).where(CallRecord.call_ref == "pbx-3"))
        assert row is not None
        row.contact_note = "x"
        ctx.session.add(
            CallRecord(
                tenant_id=center,
                at=TUESDAY_10,
                number="0312345678",
                classification="unknown",
                in_hours=True,
                charge_jpy=30,
                recorded_by="center-op",
                contact_note="ñ",
            )
        )
    assert _check(app, two)["center"] == (5, len(notes) + 1 + 2)
    with app.transaction() as ctx:  # a note cleared, a call deleted (its note with it)
        ctx.enter_tenant(center)
        row = ctx.session.scalar(select(CallRecord).where(CallRecord.call_ref == "pbx-3"))
        assert row is not None
        row.contact_note = None
        first = ctx.session.scalar(select(CallRecord).where(CallRecord.call_ref == "pbx-1"))
        ctx.session.delete(first)
    assert _check(app, two)["center"] == (4, 2)
    assert _check(app, two)["other"] == (1, 0)


def test_a_quota_check_counts_the_calls(app: Provisioner, two: dict[str, int]) -> None:
    """The room check before a call sees the maintained figures (a note included): with
    room for one call and its note, the next call is refused (nothing written)."""
    with app.transaction() as ctx:
        ctx.enter_tenant(two["center"])
        used = quotas.usage(ctx, actors.get_tenant(ctx, "center")).used_bytes
        room = quotas.CALL_RECORD_BYTES + len(NOTE.encode()) + 100
        with ctx.operator("write"):
            billing.set_prices(ctx, {"included_disk_bytes": used + room}, by="operator")
    _as(app, "center", lambda c, a: metering.record_call(c, a, "0312", call_ref="one"))
    _as(app, "center", lambda c, a: metering.add_contact_history(c, a, None, NOTE, call_ref="one"))
    with pytest.raises(QuotaExceeded, match="a call record needs 256 bytes, 100 of"):
        _as(app, "center", lambda c, a: metering.record_call(c, a, "0312", call_ref="two"))
    assert _check(app, two)["center"] == (1, len(NOTE.encode()))


def test_reindex_finds_and_rebuilds_wrong_call_figures(
    app: Provisioner, two: dict[str, int]
) -> None:
    center = two["center"]
    for ref in ("a", "b"):
        _as(app, "center", lambda c, a, r=ref: metering.record_call(c, a, "0312", call_ref=r))
    with app.transaction() as ctx:  # what a write past the services left behind
        ctx.enter_tenant(center)
        ctx.session.execute(
            update(CallBytes).where(CallBytes.tenant_id == center).values(note_bytes=99)
        )
    with app.transaction() as ctx:
        report = reindex.reindex(ctx, actors.get_tenant(ctx, "center"), check=True)
    assert (report.call_bytes, report.clean) == (1, False)
    with app.transaction() as ctx:  # the check changed nothing
        ctx.enter_tenant(center)
        assert call_usage.stored(ctx.session.connection(), center) == (2, 99)
        report = reindex.reindex(ctx, actors.get_tenant(ctx, "center"))
    assert report.call_bytes == 1
    with app.transaction() as ctx:
        report = reindex.reindex(ctx, actors.get_tenant(ctx, "center"), check=True)
    assert report.clean
    with app.transaction() as ctx:  # no row at all (a tenant whose calls were not counted)
        ctx.enter_tenant(center)
        ctx.session.execute(delete(CallBytes).where(CallBytes.tenant_id == center))
        report = reindex.reindex(ctx, actors.get_tenant(ctx, "center"))
    assert report.call_bytes == 1
    _check(app, two)


def test_migration_backfills_and_downgrades(tmp_path: Path) -> None:
    """SQLite: calls recorded before 0022 are counted by it; the downgrade drops the table."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(engine, "0021_rls_all_tables")
    with engine.begin() as conn:
        for slug, tid in (("a", 1), ("b", 2), ("c", 3)):
            conn.execute(
                text(
                    "INSERT INTO tenants (id, slug, name, plan, is_sandbox, integrations_active, "
                    "status, created_at) "
                    "VALUES (:i, :s, :s, 'standard', 0, 0, 'active', '2026-11-23 09:00:00')"
                ),
                {"i": tid, "s": slug},
            )
        for tid, note in ((1, None), (1, "日本語"), (1, ""), (2, "ab")):
            conn.execute(
                text(
                    "INSERT INTO call_records (tenant_id, at, number, classification, "
                    "in_hours, charge_jpy, recorded_by, contact_note) VALUES "
                    "(:t, '2026-11-23 09:00:00', '0312', 'unknown', 1, 30, 'x', :n)"
                ),
                {"t": tid, "n": note},
            )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT tenant_id, calls, note_bytes FROM call_bytes")).all()
        assert sorted(rows) == [(1, 3, 9), (2, 1, 2)]
        assert [call_usage.recount(conn, t) for t in (1, 2, 3)] == [(3, 9), (1, 2), (0, 0)]
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0021_rls_all_tables")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM call_records")).scalar() == 4
        tables = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
        assert "call_bytes" not in set(tables.scalars())
    engine.dispose()
