"""CTI as one act (issue 12): the screen pop is the metered call, a note typed during
the call is contact history of the customer, national holidays are free."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from provisioner.clock import parse_instant
from provisioner.db.provisioning_models import CallRecord
from provisioner.errors import NotFound, PermissionDenied
from provisioner.services import actors
from provisioner.services.context import Provisioner
from provisioner.services.crm import records
from provisioner.services.provisioning import metering
from tests.provisioning.conftest import Cli
from tests.support import World

TUESDAY_10 = parse_instant("2026-11-24T01:00:00Z")  # Tuesday 10:00 in Tokyo, a working day


@pytest.fixture
def center(app: Provisioner, world: World) -> int:
    """Tenant 'center' with operator 'op' and a customer 山田 at 03-1111-1111."""
    world.tenant("center", users={"op": "general"})
    with app.transaction() as ctx:
        admin = actors.resolve(ctx, "center-admin", "center")
        metering.add_number(ctx, admin, "0120-333-333", kind="nuisance")
        customer = records.create(
            ctx, admin, "contact", {"name": "山田 花子", "phone": "03-1111-1111"}
        )
        records.create(ctx, admin, "contact", {"name": "迷惑 太郎", "phone": "0120-333-333"})
    return int(customer.record["id"])


def _calls(app: Provisioner) -> list[tuple[str | None, str, int, int | None]]:
    with app.transaction() as ctx, ctx.operator("read"):  # the test inspects every call
        return [
            (c.call_ref, c.number, c.charge_jpy, c.contact_id)
            for c in ctx.session.scalars(select(CallRecord).order_by(CallRecord.id))
        ]


def test_a_screen_pop_records_the_call_once_per_call_id(app: Provisioner, center: int) -> None:
    for _ in range(2):  # the same call popped up twice: recorded and charged once
        with app.transaction() as ctx:
            card = metering.screen_pop(
                ctx,
                actors.resolve(ctx, "op", "center"),
                "03-1111-1111",
                call_ref="pbx-1",
                at=TUESDAY_10,
            )
        assert card["contact"]["id"] == center
        assert (card["call"]["ref"], card["call"]["charge_jpy"]) == ("pbx-1", 30)
    with app.transaction() as ctx:  # no call id: each pop-up is a call
        metering.screen_pop(ctx, actors.resolve(ctx, "op", "center"), "0311111111", at=TUESDAY_10)
    with pytest.raises(NotFound), app.transaction() as ctx:
        metering.screen_pop(
            ctx,
            actors.resolve(ctx, "op", "center"),
            "06-4444-4444",
            call_ref="pbx-2",
            at=TUESDAY_10,
        )
    assert _calls(app) == [
        ("pbx-1", "0311111111", 30, center),
        (None, "0311111111", 30, center),
        ("pbx-2", "0644444444", 30, None),
    ]  # the unknown caller too
    with app.transaction() as ctx:
        statement = metering.statement(
            ctx, actors.resolve(ctx, "center-admin", "center"), "2026-11"
        )
    assert statement.calls["customer"]["calls"] + statement.calls["unknown"]["calls"] == 3


def test_a_note_during_a_call_is_an_activity_of_the_customer(app: Provisioner, center: int) -> None:
    with app.transaction() as ctx:
        op = actors.resolve(ctx, "op", "center")
        metering.screen_pop(ctx, op, "03-1111-1111", call_ref="pbx-7", at=TUESDAY_10)
        nuisance = metering.record_call(ctx, op, "0120-333-333", at=TUESDAY_10)
    with app.transaction() as ctx:
        op = actors.resolve(ctx, "op", "center")
        metering.add_contact_history(ctx, op, None, "納期の問い合わせ", call_ref="pbx-7")
        with pytest.raises(PermissionDenied, match="nuisance"):
            metering.add_contact_history(ctx, op, nuisance.id, "しつこい営業")
    with app.transaction() as ctx:
        op = actors.resolve(ctx, "op", "center")
        history = records.list_children(ctx, op, "activity", center)
        assert [(a["date"], a["kind"], a["content"], a["staff"]) for a in history] == [
            ("2026-11-24", "phone", "納期の問い合わせ", "op")
        ]
        change = records.history(ctx, op, "activity", history[0]["id"])[0]
        assert change["purpose"] == "CTI call pbx-7 from 0311111111"
        # the nuisance caller's contact got nothing
        nuisance_contact = ctx.session.scalar(
            select(CallRecord.number).where(CallRecord.id == nuisance.id)
        )
        assert nuisance_contact == "0120333333"
    assert len(history) == 1


@pytest.mark.parametrize(
    ("at", "charged"),
    [
        ("2026-01-12T01:00:00Z", False),  # Monday, 成人の日 (national, not registered)
        ("2026-05-06T01:00:00Z", False),  # Wednesday, a substitute holiday
        ("2026-12-29T01:00:00Z", False),  # Tuesday, the tenant's own holiday
        ("2026-12-28T01:00:00Z", True),  # Monday, a working day
    ],
)
def test_national_holidays_are_free_with_the_tenants_own_on_top(
    app: Provisioner, center: int, at: str, charged: bool
) -> None:
    with app.transaction() as ctx:
        metering.add_holiday(
            ctx, actors.resolve(ctx, "center-admin", "center"), date(2026, 12, 29), name="年末休業"
        )
    with app.transaction() as ctx:
        row = metering.record_call(
            ctx, actors.resolve(ctx, "op", "center"), "03-1111-1111", at=parse_instant(at)
        )
    assert (row.in_hours, row.charge_jpy) == (charged, 30 if charged else 0)


def test_cli_lookup_is_the_metered_call(run: Cli) -> None:
    run.run("tenant", "create", "center", "--name", "Center", "--plan", "standard")
    run.run("user", "add", "op", "--tenant", "center", "--role", "admin")
    cid = run.json(
        "record",
        "create",
        "contact",
        "-t",
        "center",
        "--as",
        "op",
        "--data",
        '{"name": "山田 花子", "phone": "03-1111-1111"}',
    )["record"]["id"]
    for _ in range(2):
        card = run.json(
            "lookup", "-t", "center", "--as", "op", "03-1111-1111", "--call-id", "pbx-9"
        )
        assert card["call"]["ref"] == "pbx-9"
    noted = run.json(
        "calls", "note", "-t", "center", "--as", "op", "pbx-9", "折り返し希望", "--ref"
    )
    assert noted["contact_id"] == cid
    run.run("lookup", "-t", "center", "--as", "op", "06-4444-4444", code=1)
    month = card["call"]["at"][:7]
    calls = run.json("calls", "statement", "-t", "center", "--as", "op", "--month", month)["calls"]
    assert calls["unknown"]["calls"] == 2  # pbx-9 once, the unknown caller once


def test_a_screen_pop_is_refused_in_a_read_only_transaction(app: Provisioner, center: int) -> None:
    """The metered call is a write: refused in a read-only transaction, nothing recorded."""
    with pytest.raises(RuntimeError, match="read-only"), app.transaction(read_only=True) as ctx:
        metering.screen_pop(ctx, actors.resolve(ctx, "op", "center"), "03-1111-1111")
    assert _calls(app) == []
