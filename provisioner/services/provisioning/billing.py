"""The price book (configurable) and the monthly bill of a tenant group (REQUIREMENTS B).

    book = billing.price_book(ctx)                    # REQUIREMENTS B prices unless changed
    billing.set_prices(ctx, {"licence_jpy": 6000}, by="operator")
    bill = billing.group_bill(ctx, "acme-group", "2026-11")
    bill.total  # licences + each additional tenant + disk add-ons

The bill of a month counts the group's tenants that existed during the month
(created before its end, not cancelled before its start), in tenant order: the
first is the contract itself (its cost is the licences), each further tenant
costs ``additional_tenant_jpy`` (1 GB included); licences are the distinct users
holding a membership in any counted tenant x ``licence_jpy``; disk add-ons are
``disk_addon_jpy_per_gb`` per GB on each counted tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from provisioner.clock import as_utc
from provisioner.db.models import Membership, Tenant
from provisioner.db.provisioning_models import DiskAddon, PriceBook
from provisioner.errors import ValidationFailed
from provisioner.services import audit
from provisioner.services.provisioning import groups
from provisioner.services.transaction import Context

GIB = 1024**3
TOKYO = ZoneInfo("Asia/Tokyo")
DEFAULT_PRICES: dict[str, int] = {
    "licence_jpy": 5_500,  # per distinct user of the group, per month
    "additional_tenant_jpy": 50_000,  # each group tenant after the first, per month
    "disk_addon_jpy_per_gb": 15_000,  # per GB of add-on disk, per month
    "included_disk_bytes": GIB,  # disk included with each tenant
    "cti_customer_call_jpy": 30,
    "cti_employee_call_jpy": 15,
    "cti_nuisance_call_jpy": 0,
    "cti_unknown_call_jpy": 30,  # an unknown caller is an incoming call like any other
    "cti_mobile_pack_size": 5,
    "cti_minimum_term_months": 12,
    # CTI contract list prices: the defaults of a contract that names no price of its own.
    # The seed gives the initial fee (0 JPY for a new database); it names the other
    # items but gives no figure here, so they are 0 until the operator sets them.
    "cti_initial_jpy": 0,
    "cti_maintenance_jpy": 0,  # monthly
    "cti_seat_jpy": 0,  # software fee per seat, monthly
    "cti_mobile_pack_jpy": 0,  # per pack of cti_mobile_pack_size connections, monthly
    "cti_list_input_jpy": 0,  # the list-input option, monthly
}


def price_book(ctx: Context) -> dict[str, int]:
    row = ctx.session.scalar(select(PriceBook).where(PriceBook.name == "default"))
    return prices_of(row.data if row else None)


def prices_of(data: Mapping[str, Any] | None) -> dict[str, int]:
    """The prices of a stored price book's data (None: no book stored): the list
    prices, as changed by the book."""
    return DEFAULT_PRICES | dict(data or {})


def set_prices(ctx: Context, changes: Mapping[str, Any], *, by: str) -> dict[str, int]:
    problems = [f"unknown price {k!r}" for k in changes if k not in DEFAULT_PRICES]
    problems += [
        f"{k} must be a whole number >= 0"
        for k, v in changes.items()
        if k in DEFAULT_PRICES and (not isinstance(v, int) or isinstance(v, bool) or v < 0)
    ]
    if changes.get("cti_mobile_pack_size") == 0 or changes.get("included_disk_bytes") == 0:
        problems.append("pack size and included disk must be positive")
    if problems:
        raise ValidationFailed(
            "cannot change the price book",
            problems=problems,
            hint="prices: " + ", ".join(DEFAULT_PRICES),
        )
    row = ctx.session.scalar(select(PriceBook).where(PriceBook.name == "default"))
    if row is None:
        row = PriceBook(name="default", data={}, updated_at=ctx.clock.now(), updated_by=by)
        ctx.session.add(row)
    old = dict(row.data)
    row.data = old | dict(changes)
    row.updated_at = ctx.clock.now()
    row.updated_by = by
    with ctx.operator("write"):  # an operator's event of no tenant
        audit.record(
            ctx,
            tenant_id=None,
            actor=by,
            action="price_book:changed",
            subject="default",
            old={k: old.get(k, DEFAULT_PRICES[k]) for k in changes},
            new=dict(changes),
        )
    return price_book(ctx)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month in Japan time, as UTC instants."""
    try:
        year, mon = (int(p) for p in month.split("-"))
        start = datetime(year, mon, 1, tzinfo=TOKYO)
    except ValueError:
        raise ValidationFailed(
            f"invalid month {month!r}", hint="use YYYY-MM, e.g. 2026-11"
        ) from None
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=TOKYO)
    return start.astimezone(UTC), end.astimezone(UTC)


@dataclass
class Bill:
    group: str
    month: str
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(int(line["amount"]) for line in self.lines)

    def add(self, item: str, quantity: int, unit_price: int, detail: str = "") -> None:
        self.lines.append(
            {
                "item": item,
                "detail": detail,
                "quantity": quantity,
                "unit_price": unit_price,
                "amount": quantity * unit_price,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "month": self.month,
            "currency": "JPY",
            "total": self.total,
            "lines": self.lines,
        }


def group_bill(ctx: Context, code: str, month: str) -> Bill:
    group = groups.get(ctx, code)
    start, end = month_bounds(month)
    prices = price_book(ctx)
    counted = [
        t
        for t in groups.tenants_of(ctx, group, include_cancelled=True)
        if as_utc(t.created_at) < end
        and (t.cancelled_at is None or as_utc(t.cancelled_at) >= start)
    ]
    bill = Bill(code, month)
    ids = [t.id for t in counted]
    with ctx.operator("read"):  # the billing run reads every tenant of the group
        _bill_lines(ctx, bill, counted, ids, prices, end)
    return bill


def _bill_lines(
    ctx: Context,
    bill: Bill,
    counted: list[Tenant],
    ids: list[int],
    prices: dict[str, int],
    end: datetime,
) -> None:
    users = (
        ctx.session.scalar(
            select(func.count(func.distinct(Membership.user_id))).where(
                Membership.tenant_id.in_(ids)
            )
        )
        if ids
        else 0
    )
    bill.add(
        "licences",
        int(users or 0),
        prices["licence_jpy"],
        f"distinct users of {len(counted)} tenant(s)",
    )
    for tenant in counted[1:]:
        bill.add(
            "additional tenant",
            1,
            prices["additional_tenant_jpy"],
            f"{tenant.slug} (incl. {prices['included_disk_bytes'] // GIB} GB)",
        )
    addons = (
        dict(
            ctx.session.execute(
                select(DiskAddon.tenant_id, func.sum(DiskAddon.gb))
                .where(DiskAddon.tenant_id.in_(ids), DiskAddon.added_at < end)
                .group_by(DiskAddon.tenant_id)
            ).all()
        )
        if ids
        else {}
    )
    for tenant in counted:
        gb = int(addons.get(tenant.id) or 0)
        if gb:
            bill.add("disk add-on", gb, prices["disk_addon_jpy_per_gb"], f"{tenant.slug}, GB")
