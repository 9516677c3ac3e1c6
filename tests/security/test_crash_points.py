"""Crashes leave a whole state (issue 11).

Every named crash point (``provisioner/crashpoints.py``) is hit twice per
backend: by an injected exception in this process (``raise``), and by SIGKILL of
a forked child process that runs the operation with its own engine (``kill``:
no clean-up, the connection is cut in the middle of the transaction). Afterwards:

* the database is exactly as before the operation (every row of every table;
  each crash point lies inside one transaction, and each scenario's first write
  transaction holds it);
* every tenant's tallies, search texts and search index equal a rebuild
  (``reindex --check`` finds nothing);
* the operation can be retried and then completes, and the derived data still
  equals a rebuild.
"""

from __future__ import annotations

import os
import re
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from provisioner import crashpoints
from provisioner.clock import FrozenClock
from provisioner.db import tenancy
from provisioner.db.engine import make_engine
from provisioner.db.models import AuditEvent, Tenant, Transfer
from provisioner.db.provisioning_models import RolloutRun, RolloutTarget
from provisioner.db.schema import metadata
from provisioner.security.keystore import MasterKey
from provisioner.services import actors, reindex, signing, transfers, workflows
from provisioner.services.context import Provisioner
from provisioner.services.crm import csvio, records, search
from provisioner.services.crm.search import Query
from provisioner.services.provisioning import rollout
from provisioner.services.provisioning.rollout import Target
from tests.conftest import MASTER_KEY
from tests.crm.helpers import make
from tests.support import World, labelled
from tests.workflows.helpers import CHECK, rule, with_rules

Op = Callable[[Provisioner], None]
Done = Callable[[World], None]


@dataclass
class Scenario:
    op: Op  # the operation, through the services, on any Provisioner
    done: Done  # asserts the operation's effect, after the retry
    #: for a crash between two committed transactions: asserts that the state is exactly
    #: after the committed ones (None: the crash lies in the first write transaction, the
    #: state must be exactly as before, row for row)
    between: Done | None = None


# --------------------------------------------------------------------------- scenarios


def _trust(world: World, target: str, source: str, policy: str) -> None:
    with world.app.transaction() as ctx:
        actor = actors.resolve(ctx, f"{target}-admin", target)
        pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, source).id).encode()
        signing.trust(ctx, actor, pem, label=f"{source} HQ", policy=policy)


def _without_gold(data: dict[str, Any]) -> dict[str, Any]:
    rank = next(dict(p) for p in data["picklists"] if p["code"] == "rank")
    rank["values"] = [v for v in rank["values"] if v["code"] != "gold"]
    picklists = [rank if p["code"] == "rank" else p for p in data["picklists"]]
    boxes = [dict(c) for c in data["checkboxes"]]
    boxes[0]["label"] = "年賀状"
    return {"picklists": picklists, "checkboxes": boxes}


def approve_with_remap(world: World) -> Scenario:
    """hq drops rank 'gold'; branch (a rule watches the rank) approves with a remap."""
    with_rules(world, slug="hq")
    with_rules(
        world,
        rule(
            "rank_moved",
            "contact",
            "field_changed",
            [CHECK, {"type": "notify", "role": "admin", "message": "ランク変更"}],
            field="contact.memo_2",
        ),
        slug="branch",
    )
    world.set_config("hq", _without_gold(world.config("hq")))
    branch = world.actor("branch")
    for n in range(3):
        make(world, branch, "contact", {"name": f"金 {n}", "memo_2": "gold"})
    make(world, branch, "contact", {"name": "銀", "memo_2": "silver"})
    tid = world.send("hq", world.key("branch"))

    def op(app: Provisioner) -> None:
        World(app).approve(
            tid, "branch-admin", remaps={"rank.gold": "silver"}, only=["picklists", "checkboxes"]
        )

    def done(w: World) -> None:
        assert w.transfer(tid).status == "applied"
        assert all(
            v["code"] != "gold"
            for p in w.config("branch")["picklists"]
            if p["code"] == "rank"
            for v in p["values"]
        )

    return Scenario(op, done)


def _pending(world: World) -> int:
    world.tenant("partner")
    world.tenant("client")
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    return world.send("partner", world.key("client"))


def rollback(world: World) -> Scenario:
    tid = _pending(world)
    world.approve(tid, "client-admin")

    def op(app: Provisioner) -> None:
        with app.transaction() as ctx:
            transfers.rollback(ctx, actors.resolve(ctx, "client-admin", "client"), tid)

    def done(w: World) -> None:
        assert w.transfer(tid).status == "rolled_back"
        assert w.version("client") == 3

    return Scenario(op, done)


def receive(world: World) -> Scenario:
    world.tenant("partner")
    world.tenant("client")
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    raw = world.export("partner", world.key("client"))

    def op(app: Provisioner) -> None:
        World(app).receive("client", raw)

    def done(w: World) -> None:
        with w.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
            tenant = actors.get_tenant(ctx, "client")
            assert [
                t.status
                for t in ctx.session.scalars(
                    select(Transfer).where(Transfer.tenant_id == tenant.id)
                )
            ] == ["pending"]

    return Scenario(op, done)


def _rollout(world: World, targets: list[Target], batch_size: int = 100) -> Scenario:
    world.tenant("hq")
    world.set_config("hq", labelled(world.config("hq"), 1, "本部指定"))
    raw = world.export("hq")
    keys = {}
    for target in targets:
        world.tenant(target.slug)
        if target.key:
            keys[target.slug] = world.key(target.slug)
        else:
            _trust(world, target.slug, "hq", "manual" if "manual" in target.slug else "auto")
    with world.app.transaction() as ctx:
        run_id = rollout.start(ctx, actors.resolve(ctx, "hq-admin", "hq"), raw, targets).id

    def op(app: Provisioner) -> None:
        rollout.process(app, "hq-admin", run_id, keys=keys, batch_size=batch_size)

    def done(w: World) -> None:
        with w.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
            statuses = dict(
                ctx.session.execute(
                    select(RolloutTarget.target_slug, RolloutTarget.status).where(
                        RolloutTarget.run_id == run_id
                    )
                ).all()
            )
        assert statuses == {
            t.slug: "inbox" if t.key or "manual" in t.slug else "applied" for t in targets
        }

    return Scenario(op, done)


def rollout_batch(world: World) -> Scenario:
    return _rollout(world, [Target("shop-1"), Target("shop-2"), Target("manual-shop")])


def rollout_keyed(world: World) -> Scenario:
    return _rollout(world, [Target("keyed-shop", key=True)])


def rollout_two_batches(world: World) -> Scenario:
    """Batches of one: the crash comes after the first target's batch committed."""
    scenario = _rollout(world, [Target("shop-1"), Target("shop-2")], batch_size=1)

    def between(w: World) -> None:
        # exactly after the first batch: shop-1 whole (its transfer applied, version 2,
        # audited, status row), shop-2 untouched, the run not finished
        with w.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
            run = ctx.session.scalars(select(RolloutRun)).one()
            statuses = dict(
                ctx.session.execute(select(RolloutTarget.target_slug, RolloutTarget.status)).all()
            )
            events = {(e.tenant_id, e.action) for e in ctx.session.scalars(select(AuditEvent))}
            shops = {slug: actors.get_tenant(ctx, slug) for slug in ("shop-1", "shop-2")}
            moved = {
                slug: [
                    t.status
                    for t in ctx.session.scalars(
                        select(Transfer).where(Transfer.tenant_id == tenant.id)
                    )
                ]
                for slug, tenant in shops.items()
            }
        assert run.status != "finished"
        assert statuses == {"shop-1": "applied", "shop-2": "pending"}
        assert moved == {"shop-1": ["applied"], "shop-2": []}
        assert (shops["shop-1"].config_version, shops["shop-2"].config_version) == (2, 1)
        assert {a for t, a in events if t == shops["shop-1"].id} >= {
            "transfer:received",
            "transfer:approved",
        }
        assert not {a for t, a in events if t == shops["shop-2"].id} & {
            "transfer:received",
            "transfer:approved",
        }

    scenario.between = between
    return scenario


CSV = (
    "氏名,フリガナ,会社名,電話番号,ランク,DM送付\r\n"
    "田中 太郎,タナカ タロウ,(株)山田商事,03-1234-5678,gold,1\r\n"
    "鈴木 花子,スズキ ハナコ,株式会社川田物産,090-1111-2222,silver,0\r\n"
    "金 三郎,キン サブロウ,,,gold,0\r\n"
).encode()


def csv_import(world: World) -> Scenario:
    with_rules(
        world,
        rule(
            "vip_gold",
            "contact",
            "created",
            [CHECK, {"type": "notify", "role": "admin", "message": "VIP登録"}],
            when=[{"field": "contact.memo_2", "op": "eq", "value": "gold"}],
        ),
    )

    def op(app: Provisioner) -> None:
        with app.transaction() as ctx:
            csvio.import_customers(ctx, actors.resolve(ctx, "acme-admin", "acme"), CSV)

    def done(w: World) -> None:
        with w.app.transaction() as ctx:
            admin = actors.resolve(ctx, "acme-admin", "acme")
            found = search.search(ctx, admin, Query()).items
            assert sorted(c["name"] for c in found) == ["田中 太郎", "金 三郎", "鈴木 花子"]

    return Scenario(op, done)


def workflow(world: World) -> Scenario:
    with_rules(
        world,
        rule(
            "to_gold",
            "contact",
            "field_changed",
            [
                CHECK,
                {"type": "create_activity", "kind": "email", "content": "御礼状", "due_in_days": 0},
                {"type": "notify", "role": "admin", "message": "ゴールド"},
            ],
            field="contact.memo_2",
        ),
    )
    contact = make(world, world.actor("acme"), "contact", {"name": "金 太郎"})["id"]

    def op(app: Provisioner) -> None:
        with app.transaction() as ctx:
            records.update(
                ctx,
                actors.resolve(ctx, "acme-admin", "acme"),
                "contact",
                contact,
                {"memo_2": "gold"},
            )

    def done(w: World) -> None:
        with w.app.transaction() as ctx:
            admin = actors.resolve(ctx, "acme-admin", "acme")
            assert 7 in records.show(ctx, admin, "contact", contact)["checkboxes"]
            assert len(records.list_children(ctx, admin, "activity", contact)) == 1

    return Scenario(op, done)


def workflow_due(world: World) -> Scenario:
    with_rules(
        world,
        rule(
            "birthday",
            "contact",
            "date",
            [
                {
                    "type": "create_activity",
                    "kind": "email",
                    "content": "誕生日カード送付",
                    "due_in_days": 0,
                }
            ],
            field="contact.birthday",
            days=-3,
            yearly=True,
        ),
    )
    soon = make(world, world.actor("acme"), "contact", {"name": "誕生", "birthday": "1980-11-26"})[
        "id"
    ]

    def op(app: Provisioner) -> None:
        with app.transaction() as ctx:
            workflows.run_due(ctx, today=date(2026, 11, 23))

    def done(w: World) -> None:
        with w.app.transaction() as ctx:
            admin = actors.resolve(ctx, "acme-admin", "acme")
            assert len(records.list_children(ctx, admin, "activity", soon)) == 1

    return Scenario(op, done)


SCENARIO_OF: dict[str, Callable[[World], Scenario]] = {
    **{p: approve_with_remap for p in crashpoints.POINTS if p.startswith(("approve.", "remap."))},
    **{p: rollback for p in crashpoints.POINTS if p.startswith("rollback.")},
    **{p: receive for p in crashpoints.POINTS if p.startswith("receive.")},
    **{p: rollout_batch for p in crashpoints.POINTS if p.startswith("rollout.batch.")},
    "rollout.one.after_deliver": rollout_keyed,
    "rollout.between_batches": rollout_two_batches,
    **{p: csv_import for p in crashpoints.POINTS if p.startswith("csv.")},
    "workflow.after_record": workflow,
    "workflow.after_effects": workflow,
    "workflow.due.after_claim": workflow_due,
}


# --------------------------------------------------------------------------- checks


def dump(app: Provisioner) -> dict[str, list[str]]:
    """Every row of every table, in a stable order (every tenant's: read as the operator)."""
    out: dict[str, list[str]] = {}
    with app.engine.connect() as conn:
        tenancy.set_operator(conn, "read")
        for table in metadata.sorted_tables:
            out[table.name] = sorted(repr(tuple(row)) for row in conn.execute(table.select()))
    return out


def assert_derived_data_equals_rebuild(app: Provisioner) -> None:
    with app.transaction() as ctx:
        tenants = list(ctx.session.scalars(select(Tenant).order_by(Tenant.id)))
    for tenant in tenants:
        with app.transaction() as ctx:
            report = reindex.reindex(ctx, tenant, check=True)
        assert report.clean, report.to_dict()


def _in_child(db_url: str, clock: FrozenClock, point: str, op: Op) -> int:
    """Run ``op`` in a forked process armed to SIGKILL itself at ``point``; its wait status."""
    pid = os.fork()
    if pid == 0:  # the child: its own engine, never the parent's connections
        code = 0
        try:
            crashpoints.arm(point, "kill")
            child = Provisioner(
                make_engine(db_url),
                master_key=MasterKey(MASTER_KEY),
                clock=FrozenClock(clock.now()),
            )
            op(child)
            code = 3  # the point was never reached
        except BaseException:  # anything but the kill is a failure: say which
            traceback.print_exc()
            code = 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize("mode", crashpoints.MODES)
@pytest.mark.parametrize("point", crashpoints.POINTS)
def test_a_crash_leaves_a_whole_state_and_the_operation_can_be_retried(
    world: World, db_url: str, clock: FrozenClock, point: str, mode: crashpoints.Mode
) -> None:
    scenario = SCENARIO_OF[point](world)
    app = world.app
    before = dump(app)
    if mode == "raise":
        crashpoints.arm(point, "raise")
        try:
            with pytest.raises(crashpoints.CrashPointHit) as hit:
                scenario.op(app)
        finally:
            crashpoints.disarm()
        assert hit.value.name == point
    else:
        app.engine.dispose()  # no connection of this process is shared with the child
        status = _in_child(db_url, clock, point, scenario.op)
        assert os.WIFSIGNALED(status), f"the child did not die at {point} ({status})"
        assert os.WTERMSIG(status) == signal.SIGKILL
    if scenario.between is None:
        assert dump(app) == before
    else:
        scenario.between(world)
    assert_derived_data_equals_rebuild(app)
    scenario.op(app)  # the retry completes
    scenario.done(world)
    assert_derived_data_equals_rebuild(app)


# --------------------------------------------------------------------------- registry


def test_every_point_is_in_the_code_once_and_has_a_scenario() -> None:
    root = Path(crashpoints.__file__).parent
    found: list[str] = []
    for path in root.rglob("*.py"):
        if path.name == "crashpoints.py":  # its documentation's example
            continue
        found += re.findall(r'crashpoint\("([^"]+)"\)', path.read_text(encoding="utf-8"))
    assert sorted(found) == sorted(crashpoints.POINTS)
    assert set(SCENARIO_OF) == set(crashpoints.POINTS)
    assert len(crashpoints.POINTS) >= 20


def test_unarmed_points_do_nothing_and_bad_names_are_refused() -> None:
    crashpoints.disarm()
    for point in crashpoints.POINTS:
        crashpoints.crashpoint(point)
    with pytest.raises(ValueError, match="unknown crash point"):
        crashpoints.arm("approve.nowhere")
    with pytest.raises(ValueError, match="unknown crash mode"):
        crashpoints.arm("approve.after_lock", "explode")  # type: ignore[arg-type]
    crashpoints.arm("approve.after_lock")
    crashpoints.crashpoint("approve.after_version")  # another point: nothing
    with pytest.raises(crashpoints.CrashPointHit):
        crashpoints.crashpoint("approve.after_lock")
    crashpoints.crashpoint("approve.after_lock")  # once: disarmed by the hit
