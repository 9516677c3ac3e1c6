"""CTI pop-up metering (REQUIREMENTS E): each rule at its boundaries."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from provisioner.clock import parse_instant
from provisioner.errors import NotFound, PermissionDenied, ValidationFailed
from provisioner.services import actors
from provisioner.services.context import Provisioner
from provisioner.services.provisioning import billing, metering
from tests.support import World

CUSTOMER, EMPLOYEE, NUISANCE, STRANGER = (
    "03-1111-1111",
    "090-2222-2222",
    "0120-333-333",
    "06-4444-4444",
)


def _at(text: str) -> datetime:
    return parse_instant(text)


@pytest.fixture
def center(app: Provisioner, world: World) -> str:
    world.tenant("center", users={"op": "general"})
    with app.transaction() as ctx:
        admin = actors.resolve(ctx, "center-admin", "center")
        metering.set_business_hours(ctx, admin, {d: ("09:00", "18:00") for d in range(5)})
        metering.add_holiday(ctx, admin, date(2026, 11, 23), name="勤労感謝の日")
        metering.add_number(ctx, admin, CUSTOMER, kind="customer", label="山田様")
        metering.add_number(ctx, admin, "+81 90-2222-2222", kind="employee", login="op")
        metering.add_number(ctx, admin, NUISANCE, kind="nuisance")
    return "center"


def _call(app: Provisioner, number: str, at: str) -> tuple[str, bool, int]:
    with app.transaction() as ctx:
        row = metering.record_call(ctx, actors.resolve(ctx, "op", "center"), number, at=_at(at))
        return row.classification, row.in_hours, row.charge_jpy


# Tuesday 2026-11-24 in Japan (UTC+9): 09:00 JST = 00:00Z, 18:00 JST = 09:00Z
@pytest.mark.parametrize(
    ("at", "charged"),
    [
        ("2026-11-23T23:59:00Z", False),  # 08:59 JST: before opening
        ("2026-11-24T00:00:00Z", True),  # 09:00 JST: the first minute
        ("2026-11-24T08:59:00Z", True),  # 17:59 JST: the last minute
        ("2026-11-24T08:59:59Z", True),  # 17:59:59 JST: still the last minute
        ("2026-11-24T09:00:00Z", False),  # 18:00 JST: closed
        ("2026-11-24T15:30:00Z", False),  # Tuesday 15:30 in UTC, but Wednesday 00:30 in Tokyo
        ("2026-11-28T01:00:00Z", False),  # Saturday 10:00 JST
        ("2026-11-23T01:00:00Z", False),  # Monday 10:00 JST, a configured holiday
        ("2026-11-23T00:00:00Z", False),  # the holiday at 09:00 JST, its first business minute
        ("2026-11-23T08:59:00Z", False),  # the holiday at 17:59 JST, its last business minute
        ("2026-11-22T23:59:00Z", False),  # Monday 08:59 JST
        ("2026-11-30T01:00:00Z", True),  # the next Monday 10:00 JST, a working day
    ],
)
def test_business_hours_and_holidays_in_tokyo_time(
    app: Provisioner, center: str, at: str, charged: bool
) -> None:
    kind, in_hours, amount = _call(app, CUSTOMER, at)
    assert kind == "customer"
    assert in_hours is charged
    assert amount == (30 if charged else 0)


@pytest.mark.parametrize(
    ("number", "kind", "price"),
    [
        (CUSTOMER, "customer", 30),
        (EMPLOYEE, "employee", 15),
        (NUISANCE, "nuisance", 0),
        (STRANGER, "unknown", 30),
    ],
)
def test_price_per_classification(
    app: Provisioner, center: str, number: str, kind: str, price: int
) -> None:
    assert _call(app, number, "2026-11-24T01:00:00Z") == (kind, True, price)
    assert _call(app, number, "2026-11-24T10:00:00Z") == (kind, False, 0)


def test_nuisance_calls_take_no_contact_history(app: Provisioner, center: str) -> None:
    with app.transaction() as ctx:
        op = actors.resolve(ctx, "op", "center")
        nuisance = metering.record_call(ctx, op, NUISANCE, at=_at("2026-11-24T01:00:00Z"))
        customer = metering.record_call(ctx, op, CUSTOMER, at=_at("2026-11-24T01:00:00Z"))
    with app.transaction() as ctx:
        op = actors.resolve(ctx, "op", "center")
        with pytest.raises(PermissionDenied, match="nuisance"):
            metering.add_contact_history(ctx, op, nuisance.id, "しつこい営業")
        assert (
            metering.add_contact_history(ctx, op, customer.id, "注文の確認").contact_note
            == "注文の確認"
        )


def test_employee_number_must_belong_to_a_user_of_the_tenant(
    app: Provisioner, center: str, world: World
) -> None:
    world.tenant("elsewhere", users={"outsider": "general"})
    with app.transaction() as ctx:
        admin = actors.resolve(ctx, "center-admin", "center")
        with pytest.raises(ValidationFailed, match="belongs to a user"):
            metering.add_number(ctx, admin, "090-9999-0000", kind="employee")
        with pytest.raises(NotFound, match="no user 'outsider'"):
            metering.add_number(ctx, admin, "090-9999-0000", kind="employee", login="outsider")


def test_mobile_connections_are_sold_in_packs_of_five(app: Provisioner, center: str) -> None:
    """A peak of 8 concurrent connections buys 2 packs (10): not an error."""
    with app.transaction() as ctx:
        metering.set_contract(
            ctx,
            "center",
            started_on=date(2026, 1, 1),
            maintenance_jpy=10_000,
            seat_fee_jpy=2_000,
            seats=3,
            mobile_connections=8,
            mobile_pack_jpy=5_000,
            by="operator",
        )
        result = metering.statement(ctx, actors.resolve(ctx, "center-admin", "center"), "2026-02")
    packs = next(ln for ln in result.lines if ln["item"].startswith("mobile"))
    assert (packs["quantity"], packs["amount"]) == (2, 10_000)
    assert [metering.mobile_packs(n, 5) for n in (0, 1, 5, 6, 10, 11)] == [0, 1, 1, 2, 2, 3]


# started 2026-01-15: the minimum term is February 2026 .. January 2027; the month of
# cancellation is used (billed), the months after it to January 2027 remain
@pytest.mark.parametrize(
    ("cancelled", "fee"),
    [
        (date(2026, 1, 20), 12 * 10_000),  # the start month: the whole term remains
        (date(2026, 2, 1), 11 * 10_000),  # the term's first month is used
        (date(2026, 6, 10), 7 * 10_000),  # the worked example: July..January
        (date(2026, 12, 31), 1 * 10_000),  # January 2027 remains
        (date(2027, 1, 1), 0),  # the term's last month: served
        (date(2027, 3, 1), 0),
    ],
)
def test_early_cancellation_fee(cancelled: date, fee: int) -> None:
    assert (
        metering.early_cancellation_fee(date(2026, 1, 15), cancelled, maintenance_jpy=10_000) == fee
    )


def test_monthly_statement(app: Provisioner, center: str) -> None:
    for number, at in [
        (CUSTOMER, "2026-11-24T01:00:00Z"),
        (CUSTOMER, "2026-11-24T02:00:00Z"),
        (EMPLOYEE, "2026-11-24T03:00:00Z"),
        (NUISANCE, "2026-11-24T03:00:00Z"),
        (STRANGER, "2026-11-24T12:00:00Z"),  # out of hours
        (CUSTOMER, "2026-11-30T15:30:00Z"),  # 12-01 00:30 JST: December
    ]:
        _call(app, number, at)
    with app.transaction() as ctx:
        metering.set_contract(
            ctx,
            "center",
            started_on=date(2026, 4, 1),
            maintenance_jpy=10_000,
            seat_fee_jpy=2_000,
            seats=3,
            mobile_connections=10,
            mobile_pack_jpy=5_000,
            by="operator",
        )
        metering.cancel_contract(ctx, "center", on=date(2026, 11, 24), by="operator")
        result = metering.statement(ctx, actors.resolve(ctx, "center-admin", "center"), "2026-11")
    assert result.calls["customer"] == {"calls": 2, "in_hours": 2, "out_of_hours": 0, "amount": 60}
    assert result.calls["unknown"] == {"calls": 1, "in_hours": 0, "out_of_hours": 1, "amount": 0}
    items = {line["item"]: line["amount"] for line in result.lines}
    assert items["pop-ups: employee"] == 15
    assert items["pop-ups: nuisance"] == 0
    assert items["maintenance"] == 10_000
    assert items["seats"] == 6_000
    assert items["mobile connections (packs of 5)"] == 10_000
    # the term is May 2026 .. April 2027; November is used: December..April remain
    assert items["early cancellation fee"] == 5 * 10_000
    assert result.total == 60 + 15 + 10_000 + 6_000 + 10_000 + 50_000


def test_statement_needs_an_admin(app: Provisioner, center: str) -> None:
    with app.transaction() as ctx, pytest.raises(PermissionDenied):
        metering.statement(ctx, actors.resolve(ctx, "op", "center"), "2026-11")


def _statement(app: Provisioner, month: str) -> dict[str, int]:
    with app.transaction() as ctx:
        result = metering.statement(ctx, actors.resolve(ctx, "center-admin", "center"), month)
    return {line["item"]: line["amount"] for line in result.lines}


def test_monthly_fees_only_from_the_start_month_to_the_cancellation_month(
    app: Provisioner, center: str
) -> None:
    with app.transaction() as ctx:
        metering.set_contract(
            ctx,
            "center",
            started_on=date(2026, 1, 15),
            maintenance_jpy=10_000,
            seat_fee_jpy=2_000,
            seats=3,
            mobile_connections=5,
            mobile_pack_jpy=5_000,
            by="operator",
        )
        metering.cancel_contract(ctx, "center", on=date(2026, 6, 10), by="operator")
    assert _statement(app, "2025-12") == {}  # before the start: nothing
    assert _statement(app, "2026-01") == {
        "maintenance": 10_000,
        "seats": 6_000,
        "mobile connections (packs of 5)": 5_000,
    }
    june = _statement(app, "2026-06")  # the cancellation month: fees and the fee
    assert june["maintenance"] == 10_000
    assert june["early cancellation fee"] == 70_000  # 7 months (July..January) x 10,000
    assert _statement(app, "2026-07") == {}  # after the cancellation: nothing
    assert _statement(app, "2027-01") == {}


def test_calls_after_the_cancellation_are_not_billable(app: Provisioner, center: str) -> None:
    with app.transaction() as ctx:
        metering.set_contract(
            ctx,
            "center",
            started_on=date(2026, 11, 2),
            maintenance_jpy=0,
            seat_fee_jpy=0,
            seats=1,
            by="operator",
        )
        metering.cancel_contract(ctx, "center", on=date(2026, 11, 24), by="operator")
    # Tuesday 2026-11-24 10:00 JST: the cancellation day is still served
    assert _call(app, CUSTOMER, "2026-11-24T01:00:00Z") == ("customer", True, 30)
    # Wednesday 2026-11-25 10:00 JST, in business hours, but the contract has ended
    assert _call(app, CUSTOMER, "2026-11-25T01:00:00Z") == ("customer", True, 0)
    # before the start (Friday 2026-10-30 10:00 JST)
    assert _call(app, CUSTOMER, "2026-10-30T01:00:00Z") == ("customer", True, 0)
    assert _statement(app, "2026-11")["pop-ups: customer"] == 30


def test_contract_prices_default_to_the_price_book_and_can_be_overridden(
    app: Provisioner, center: str
) -> None:
    with app.transaction() as ctx:
        billing.set_prices(
            ctx,
            {
                "cti_initial_jpy": 50_000,
                "cti_maintenance_jpy": 12_000,
                "cti_seat_jpy": 3_000,
                "cti_mobile_pack_jpy": 4_000,
                "cti_list_input_jpy": 2_000,
            },
            by="operator",
        )
        row = metering.set_contract(
            ctx,
            "center",
            started_on=date(2026, 3, 10),
            seats=2,
            mobile_connections=6,
            seat_fee_jpy=2_500,
            list_input=True,
            by="operator",
        )
        assert (
            row.initial_jpy,
            row.maintenance_jpy,
            row.seat_fee_jpy,
            row.mobile_pack_jpy,
            row.list_input_jpy,
        ) == (50_000, 12_000, 2_500, 4_000, 2_000)
    assert _statement(app, "2026-03") == {
        "maintenance": 12_000,
        "seats": 5_000,
        "mobile connections (packs of 5)": 8_000,
        "list-input option": 2_000,
        "initial fee": 50_000,
    }
    assert "initial fee" not in _statement(app, "2026-04")
    with app.transaction() as ctx:  # a later change of the list price leaves the contract
        billing.set_prices(ctx, {"cti_maintenance_jpy": 20_000}, by="operator")
    assert _statement(app, "2026-04")["maintenance"] == 12_000
