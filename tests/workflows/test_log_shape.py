"""The execution log of bulk writes: one row per rule and write naming its records.

``workflow log`` shows it as before (one entry per rule and record, newest first),
``workflow list`` reads counters kept with the log (``wf_stats``), and migration
``0019_wf_log`` converts a log written one row per record into this shape.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import func, select, text

from provisioner.clock import format_instant
from provisioner.db import migrate
from provisioner.db.workflow_models import BATCH_SPAN, WfExecution, WfStat
from provisioner.services import workflows
from provisioner.services.crm import automation, csvio, derived, records
from tests.crm.helpers import make, owner_engine
from tests.support import World
from tests.workflows.helpers import CHECK, GOLD, rule, with_rules


def _csv(header: str, *lines: str) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


# ---------------------------------------------------------------- packing ids


@pytest.mark.parametrize(
    ("ids", "packed"),
    [
        ([7], "7"),
        ([3, 4, 5, 9], "3-5,9"),
        ([1, 3, 5], "1,3,5"),
        ([10, 11, 20, 21, 22, 30], "10-11,20-22,30"),
        (list(range(100, 5100)), "100-5099"),
    ],
)
def test_ids_pack_into_runs_and_back(ids: list[int], packed: str) -> None:
    assert automation.pack_ids(ids) == packed
    assert automation.unpack_ids(packed) == ids
    assert automation.count_ids(packed) == len(ids)
    assert automation.record_ids(0, packed) == ids
    assert automation.record_ids(42, "") == [42]


def test_batch_rows_cover_at_most_the_span_and_a_lone_id_is_a_plain_row() -> None:
    template = {"workflow": "w", "record_id": 0, "last_record_id": None, "record_ids": ""}
    ids = [5, 6, 7, 5 + BATCH_SPAN, 6 + BATCH_SPAN, 10 * BATCH_SPAN]
    rows = automation.batch_rows(template, list(reversed(ids)))
    assert [(r["record_id"], r["last_record_id"], r["record_ids"]) for r in rows] == [
        (5, 5 + BATCH_SPAN, f"5-7,{5 + BATCH_SPAN}"),
        (6 + BATCH_SPAN, None, ""),
        (10 * BATCH_SPAN, None, ""),
    ]
    assert [i for r in rows for i in automation.record_ids(r["record_id"], r["record_ids"])] == ids


# ---------------------------------------------------------------- the log, read back


def _entries(world: World, **kw: Any) -> list[dict[str, Any]]:
    with world.app.transaction() as ctx:
        return workflows.execution_log(ctx, world.actor("acme"), **kw)


def test_an_import_logs_a_row_per_rule_and_the_log_shows_each_record(world: World) -> None:
    with_rules(
        world,
        rule("vip_gold", "contact", "created", [CHECK], when=[GOLD]),
        rule("dm", "contact", "created", [{"type": "set_checkbox", "index": 2, "checked": True}]),
    )
    admin = world.actor("acme")
    before = make(world, admin, "contact", {"name": "前 一郎", "memo_2": "gold"})
    # gold and silver rows alternate: the gold rows' ids have gaps
    lines = [f"金 {n}郎,gold" if n % 2 else f"銀 {n}郎,silver" for n in range(60)]
    with world.app.transaction() as ctx:
        csvio.import_customers(ctx, admin, _csv("name,memo_2", *lines))
        ids = {
            name: i
            for i, name in ctx.session.execute(
                text("SELECT id, name FROM crm_contacts WHERE tenant_id = :t"),
                {"t": admin.tenant_id},
            )
        }
        rows = ctx.session.scalar(select(func.count()).select_from(WfExecution))
    after = make(world, admin, "contact", {"name": "後 一郎", "memo_2": "gold"})
    # 2 rows per single create; the import: vip_gold and dm on the gold rows, dm on the others
    assert rows == 2 + 3
    gold = sorted(ids[f"金 {n}郎"] for n in range(1, 60, 2))
    silver = sorted(ids[f"銀 {n}郎"] for n in range(0, 60, 2))

    every = _entries(world, limit=1000)
    assert len(every) == 2 + 30 * 2 + 30 + 2
    assert [(e["workflow"], e["record_id"]) for e in every[:2]] == [
        ("dm", after["id"]),
        ("vip_gold", after["id"]),
    ]
    assert [(e["workflow"], e["record_id"]) for e in every[-2:]] == [
        ("dm", before["id"]),
        ("vip_gold", before["id"]),
    ]
    imported = every[2:-2]
    assert sorted((e["workflow"], e["record_id"]) for e in imported) == sorted(
        [("vip_gold", i) for i in gold] + [("dm", i) for i in gold + silver]
    )
    for e in imported:  # as a single create logs it
        assert e["trigger"] == "created"
        assert e["depth"] == 0
        assert e["error"] == ""
    # per rule, newest row first, its records highest first
    assert [e["record_id"] for e in imported[:30]] == sorted(gold, reverse=True)

    # a record's entries: found inside a bulk row, not in its gaps
    for record in (gold[0], gold[7], gold[-1]):
        shown = _entries(world, record_type="contact", record_id=record)
        assert [e["workflow"] for e in shown] == ["dm", "vip_gold"], record
        assert {e["record_id"] for e in shown} == {record}
        assert [{**e, "record_id": 0} for e in shown] == [
            {**e, "record_id": 0}
            for e in _entries(world, record_type="contact", record_id=before["id"])
        ]
    for record in (silver[0], silver[9], silver[-1]):
        assert [
            e["workflow"] for e in _entries(world, record_type="contact", record_id=record)
        ] == ["dm"]
    assert _entries(world, record_type="contact", record_id=max(gold) + 1000) == []
    only = _entries(world, record_type="contact", record_id=gold[3], workflow="vip_gold")
    assert [(e["workflow"], e["record_id"]) for e in only] == [("vip_gold", gold[3])]
    assert len(_entries(world, limit=7)) == 7


def test_workflow_list_counts_every_firing_as_the_log_has_it(world: World) -> None:
    with_rules(
        world,
        rule("vip_gold", "contact", "created", [CHECK], when=[GOLD]),
        rule("renamed", "contact", "field_changed", [CHECK], field="contact.title"),
        rule("never", "contact", "created", [CHECK], when=[{**GOLD, "value": "none"}]),
    )
    admin = world.actor("acme")
    single = make(world, admin, "contact", {"name": "単 一郎", "memo_2": "gold"})
    world.app.clock.advance(minutes=5)  # type: ignore[attr-defined]
    with world.app.transaction() as ctx:
        csvio.import_customers(
            ctx, admin, _csv("name,memo_2", *(f"金 {n}郎,gold" for n in range(25)))
        )
    world.app.clock.advance(minutes=5)  # type: ignore[attr-defined]
    with world.app.transaction() as ctx:
        records.update(ctx, admin, "contact", single["id"], {"title": "部長"})
    with world.app.transaction() as ctx:
        listed = {w["code"]: w for w in workflows.list_workflows(ctx, admin)}
        expected = {
            code: (n, format_instant(last))
            for code, n, last in ctx.session.execute(
                select(WfStat.workflow, WfStat.firings, WfStat.last_fired)
            )
        }
    log = _entries(world, limit=1000)
    counted: dict[str, int] = {}
    for e in log:
        counted[e["workflow"]] = counted.get(e["workflow"], 0) + 1
    assert counted == {"vip_gold": 26, "renamed": 1}
    assert {c: w["firings"] for c, w in listed.items()} == {**counted, "never": 0}
    for code in counted:
        assert listed[code]["last_fired"] == max(e["at"] for e in log if e["workflow"] == code)
        assert expected[code] == (counted[code], listed[code]["last_fired"])
    assert listed["never"]["last_fired"] is None
    start = world.app.clock.now() - timedelta(minutes=10)
    assert listed["vip_gold"]["last_fired"] == format_instant(start + timedelta(minutes=5))


def test_a_rolled_back_write_leaves_no_log_and_no_count(world: World) -> None:
    with_rules(world, rule("vip_gold", "contact", "created", [CHECK], when=[GOLD]))
    admin = world.actor("acme")
    rows = _csv("name,memo_2", *(f"金 {n},gold" for n in range(20)))

    def import_then_fail() -> None:
        with world.app.transaction() as ctx:
            csvio.import_customers(ctx, admin, rows)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        import_then_fail()
    with world.app.transaction() as ctx:
        assert workflows.list_workflows(ctx, admin)[0]["firings"] == 0
        assert ctx.session.scalar(select(func.count()).select_from(WfExecution)) == 0


# ---------------------------------------------------------------- migration 0019


def _old_rows(tenant_id: int, at: Any) -> list[dict[str, Any]]:
    """A log as the release before 0019 wrote it: a single write's rows, then an
    import's rows (per rule, one row per record, in order of ids), then another write."""
    base = {
        "tenant_id": tenant_id,
        "config_version": 3,
        "record_type": "contact",
        "trigger": "created",
        "depth": 0,
        "error": "",
    }
    rows = [
        {**base, "at": at, "workflow": "vip", "record_id": 1, "changes": {"checkboxes": [0, 64]}}
    ]
    later = at + timedelta(minutes=1)
    for code, changes in (("vip", {"checkboxes": [0, 64]}), ("dm", {"memo_3": ["", "DM"]})):
        rows += [
            {**base, "at": later, "workflow": code, "record_id": i, "changes": changes}
            for i in range(10, 30)
        ]
    rows.append({**base, "at": later, "workflow": "dm", "record_id": 31, "changes": {}})
    rows.append(
        {
            **base,
            "at": later + timedelta(minutes=1),
            "workflow": "vip",
            "record_id": 12,
            "trigger": "updated",
            "changes": {},
            "error": "memo_9: not a value of the picklist",
        }
    )
    return rows


def test_migration_0019_packs_an_existing_log_and_counts_the_workflows(
    world: World, request: pytest.FixtureRequest
) -> None:
    with owner_engine(world, request) as owner:  # the migrations, and a look at every tenant
        _check_0019(world, owner)


def _check_0019(world: World, owner: sa.Engine) -> None:
    world.tenant("acme")
    world.tenant("other")
    acme, other = world.actor("acme"), world.actor("other")
    at = world.app.clock.now()
    cfg = migrate.alembic_config()
    with owner.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0018_config_documents")  # the revision before 0019
    old = _old_rows(acme.tenant_id, at) + _old_rows(other.tenant_id, at)[:5]
    log = sa.table(  # the table as the release before 0019 had it
        "wf_executions",
        sa.column("tenant_id", sa.Integer()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("workflow", sa.String()),
        sa.column("config_version", sa.Integer()),
        sa.column("record_type", sa.String()),
        sa.column("record_id", sa.BigInteger()),
        sa.column("trigger", sa.String()),
        sa.column("depth", sa.Integer()),
        sa.column("changes", sa.JSON()),
        sa.column("error", sa.Text()),
    )
    with owner.begin() as conn:
        conn.execute(sa.insert(log), old)
    # what the log showed before: newest row first, one entry per row
    shown = [
        (r["workflow"], r["record_id"], r["trigger"], r["error"], format_instant(r["at"]))
        for r in reversed(old)
        if r["tenant_id"] == acme.tenant_id
    ]
    migrate.upgrade(owner, rebuild=derived.rebuild)
    assert migrate.current(world.app.engine) == migrate.heads()
    with owner.connect() as conn:
        kept = conn.execute(
            text(
                "SELECT tenant_id, workflow, record_id, last_record_id, record_ids "
                "FROM wf_executions ORDER BY id"
            )
        ).all()
    assert [tuple(r) for r in kept if r[0] == acme.tenant_id] == [
        (acme.tenant_id, "vip", 1, None, ""),
        (acme.tenant_id, "vip", 10, 29, "10-29"),
        (acme.tenant_id, "dm", 10, 29, "10-29"),
        (acme.tenant_id, "dm", 31, None, ""),
        (acme.tenant_id, "vip", 12, None, ""),
    ]
    assert [tuple(r) for r in kept if r[0] == other.tenant_id] == [
        (other.tenant_id, "vip", 1, None, ""),
        (other.tenant_id, "vip", 10, 13, "10-13"),
    ]
    with world.app.transaction() as ctx:
        entries = workflows.execution_log(ctx, acme, limit=1000)
        one = workflows.execution_log(ctx, acme, record_type="contact", record_id=12)
    with world.app.transaction() as ctx, ctx.operator("read"):  # every tenant's counts
        stats = {
            (t, w): (n, format_instant(last))
            for t, w, n, last in ctx.session.execute(
                select(WfStat.tenant_id, WfStat.workflow, WfStat.firings, WfStat.last_fired)
            )
        }
    assert [
        (e["workflow"], e["record_id"], e["trigger"], e["error"], e["at"]) for e in entries
    ] == shown
    assert [(e["workflow"], e["trigger"]) for e in one] == [
        ("vip", "updated"),
        ("dm", "created"),
        ("vip", "created"),
    ]
    later = format_instant(at + timedelta(minutes=1))
    assert stats == {
        (acme.tenant_id, "vip"): (22, format_instant(at + timedelta(minutes=2))),
        (acme.tenant_id, "dm"): (21, later),
        (other.tenant_id, "vip"): (5, later),
    }

    # and back: one row per record again
    with owner.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0018_config_documents")  # the revision before 0019
    with owner.connect() as conn:
        back = conn.execute(
            text("SELECT tenant_id, workflow, record_id, trigger, error FROM wf_executions")
        ).all()
    assert sorted(tuple(r) for r in back) == sorted(
        (r["tenant_id"], r["workflow"], r["record_id"], r["trigger"], r["error"]) for r in old
    )
    migrate.upgrade(owner, rebuild=derived.rebuild)
