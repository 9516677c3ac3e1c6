"""Pay-per-use CTI pop-up metering (REQUIREMENTS E).

    metering.add_number(ctx, admin, "090-1234-5678", kind="employee", login="sato")
    metering.set_business_hours(ctx, admin, {0: ("09:00", "18:00"), ...})
    metering.add_holiday(ctx, admin, date(2026, 12, 29), name="年末休業")
    call = metering.record_call(ctx, operator, "03-1234-5678")   # classified and priced
    card = metering.screen_pop(ctx, operator, "03-1234-5678", call_ref="pbx-4711")
    metering.add_contact_history(ctx, operator, None, "注文の確認", call_ref="pbx-4711")
    metering.statement(ctx, admin, "2026-11")                     # the monthly statement

Each incoming call is classified by its number: ``employee`` (a registered
number of one of the tenant's users), ``nuisance`` (registered as a nuisance
caller), ``customer`` (a registered customer number), else ``unknown``; it is
priced from the price book (30 / 15 / 0 JPY; unknown callers like customers:
30). Calls outside the tenant's business hours or on its configured holidays
are free. Time is read in the Asia/Tokyo calendar; business hours are
[opens, closes): 09:00 is inside, 18:00 is not. A tenant that configured no
business hours has Monday-Friday 09:00-18:00. Holidays are Japan's national
holidays (the ``jpholiday`` package: substitute and citizens' holidays
included) plus the tenant's own list.

A screen pop (:func:`screen_pop`: the CLI ``lookup``, the API lookup, the
console's pop-up) is the metered call: it records the call with its charge and
returns the caller's card. The telephony side may pass its call id
(``call_ref``): a pop-up of a call already recorded is not recorded or charged
again. A call from a number no customer has is recorded too (then "not found").
A note typed during the call (:func:`add_contact_history`) becomes an activity
(contact history) of the customer that popped up, written through
``records.create``; nuisance callers can not receive contact history.

The contract: monthly maintenance fee, a fee per seat, mobile concurrent
connections sold in packs of 5 (a peak of 8 buys 2 packs), billed from the
start month to the cancellation month (both included); a 12-month minimum
term from the month after the start (started 2026-01-15: February 2026 to
January 2027); cancelling early costs the maintenance fee x the term's months
after the cancellation month (cancelled 2026-06-10: 7 months). Calls before
the start day or after the cancellation day are recorded but not charged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import jpholiday
from sqlalchemy import Integer, bindparam, insert, or_, select

from provisioner.clock import as_utc, format_instant
from provisioner.db.crm_models import CrmContact
from provisioner.db.models import Membership, Tenant, User
from provisioner.db.provisioning_models import (
    BusinessHours,
    CallRecord,
    CtiContract,
    Holiday,
    PhoneNumber,
)
from provisioner.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    PlanConflict,
    ValidationFailed,
)
from provisioner.services import audit
from provisioner.services.actors import Actor, get_tenant, require_admin, require_tenant
from provisioner.services.crm import records, scope, search
from provisioner.services.crm.text import phone_digits
from provisioner.services.provisioning import call_usage, quotas
from provisioner.services.provisioning.billing import TOKYO, month_bounds, price_book, prices_of
from provisioner.services.transaction import Context

KINDS = ("customer", "employee", "nuisance")
DEFAULT_HOURS: dict[int, tuple[str, str]] = {d: ("09:00", "18:00") for d in range(5)}
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def normalize_number(text: str) -> str:
    """Digits only; ``+81 90-...`` becomes ``090...`` (Japanese numbering)."""
    digits = re.sub(r"\D", "", text)
    if text.strip().startswith("+81"):
        digits = "0" + digits[2:]
    if not 3 <= len(digits) <= 20:
        raise ValidationFailed(f"invalid phone number {text!r}", hint="e.g. 03-1234-5678")
    return digits


# --------------------------------------------------------------------------- pure rules


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def in_business_hours(
    at: datetime, hours: Mapping[int, tuple[str, str]], holidays: set[date]
) -> bool:
    """Whether an instant is inside business hours, in the Asia/Tokyo calendar."""
    local = at.astimezone(TOKYO)
    if local.date() in holidays or jpholiday.is_holiday(local.date()):
        return False
    span = hours.get(local.weekday())
    if span is None:
        return False
    minute = local.hour * 60 + local.minute
    return _minutes(span[0]) <= minute < _minutes(span[1])


def charge(classification: str, in_hours: bool, prices: Mapping[str, int]) -> int:
    if not in_hours:
        return 0
    return prices[f"cti_{classification}_call_jpy"]


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def early_cancellation_fee(
    started_on: date, cancelled_on: date, *, maintenance_jpy: int, minimum_months: int = 12
) -> int:
    """Maintenance fee x the months left of the minimum term.

    The term runs ``minimum_months`` from the month after the start (started
    2026-01-15: February 2026 to January 2027); the month of cancellation is
    used (billed), so cancelling on 2026-06-10 leaves July..January: 7 months.
    """
    last = _month_index(started_on) + minimum_months  # the term's last month
    return maintenance_jpy * max(0, last - _month_index(cancelled_on))


@dataclass(frozen=True)
class Term:
    """A contract's term as read with other facts (:func:`record_call`)."""

    started_on: date
    cancelled_on: date | None


def in_contract(contract: CtiContract | Term | None, day: date) -> bool:
    """Whether the contract is in force on a (Tokyo) day: from its start to its
    cancellation day, both included. No contract: calls are metered as before."""
    if contract is None:
        return True
    return contract.started_on <= day and (
        contract.cancelled_on is None or day <= contract.cancelled_on
    )


def billed_month(contract: CtiContract, month: str) -> bool:
    """Whether the monthly fees are due for ``month`` (YYYY-MM): from the start
    month to the cancellation month, both included."""
    year, mon = (int(p) for p in month.split("-"))
    index = year * 12 + mon - 1
    return _month_index(contract.started_on) <= index and (
        contract.cancelled_on is None or index <= _month_index(contract.cancelled_on)
    )


def mobile_packs(connections: int, pack: int) -> int:
    """Packs of ``pack`` connections that cover a peak (8 at 5 a pack: 2 packs)."""
    return -(-connections // pack)


# --------------------------------------------------------------------------- configuration


def add_number(
    ctx: Context, actor: Actor, number: str, *, kind: str, login: str | None = None, label: str = ""
) -> PhoneNumber:
    require_admin(actor, "register phone numbers")
    ctx.enter_tenant(actor.tenant_id)  # the tenant's numbers and members
    if kind not in KINDS:
        raise ValidationFailed(f"unknown kind {kind!r}", hint="kinds: " + ", ".join(KINDS))
    digits = normalize_number(number)
    user_id = None
    if kind == "employee":
        if login is None:
            raise ValidationFailed("an employee number belongs to a user", hint="--user LOGIN")
        user_id = ctx.session.scalar(
            select(User.id)
            .join(Membership, Membership.user_id == User.id)
            .where(User.login == login, Membership.tenant_id == actor.tenant_id)
        )
        if user_id is None:
            raise NotFound(f"no user {login!r} in tenant {actor.tenant_slug!r}")
    existing = ctx.session.scalar(
        select(PhoneNumber).where(
            PhoneNumber.tenant_id == actor.tenant_id, PhoneNumber.number == digits
        )
    )
    if existing is not None:
        raise AlreadyExists(f"number {digits} is already registered as {existing.kind}")
    row = PhoneNumber(
        tenant_id=actor.tenant_id,
        number=digits,
        kind=kind,
        user_id=user_id,
        label=label,
        added_at=ctx.clock.now(),
    )
    ctx.session.add(row)
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="phone:registered",
        subject=digits,
        kind=kind,
        user=login,
    )
    return row


def set_business_hours(ctx: Context, actor: Actor, hours: Mapping[int, tuple[str, str]]) -> None:
    require_admin(actor, "set business hours")
    ctx.enter_tenant(actor.tenant_id)  # the tenant's hours
    problems = [f"weekday {d} (0=Monday ... 6=Sunday)" for d in hours if not 0 <= d <= 6]
    for day, (opens, closes) in hours.items():
        if not (_HHMM.match(opens) and _HHMM.match(closes)) or _minutes(opens) >= _minutes(closes):
            problems.append(f"weekday {day}: {opens}-{closes} is not a range like 09:00-18:00")
    if problems:
        raise ValidationFailed("invalid business hours", problems=problems)
    for row in ctx.session.scalars(
        select(BusinessHours).where(BusinessHours.tenant_id == actor.tenant_id)
    ):
        ctx.session.delete(row)
    ctx.session.flush()
    for day, (opens, closes) in sorted(hours.items()):
        ctx.session.add(
            BusinessHours(tenant_id=actor.tenant_id, weekday=day, opens=opens, closes=closes)
        )
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="business_hours:set",
        subject=actor.tenant_slug,
        hours={str(d): list(span) for d, span in sorted(hours.items())},
    )


def business_hours(ctx: Context, tenant_id: int) -> dict[int, tuple[str, str]]:
    return hours_of(
        ctx.session.scalars(select(BusinessHours).where(BusinessHours.tenant_id == tenant_id))
    )


def hours_of(rows: Iterable[Any]) -> dict[int, tuple[str, str]]:
    """A tenant's business hours from its rows (weekday, opens, closes); none configured:
    :data:`DEFAULT_HOURS`."""
    configured = {r.weekday: (r.opens, r.closes) for r in rows}
    return configured or dict(DEFAULT_HOURS)


def add_holiday(ctx: Context, actor: Actor, day: date, *, name: str = "") -> Holiday:
    require_admin(actor, "configure holidays")
    ctx.enter_tenant(actor.tenant_id)  # the tenant's holidays
    if (
        ctx.session.scalar(
            select(Holiday.id).where(Holiday.tenant_id == actor.tenant_id, Holiday.day == day)
        )
        is not None
    ):
        raise AlreadyExists(f"{day.isoformat()} is already a holiday")
    row = Holiday(tenant_id=actor.tenant_id, day=day, name=name)
    ctx.session.add(row)
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="holiday:added",
        subject=day.isoformat(),
        name=name,
    )
    return row


def holidays(ctx: Context, tenant_id: int) -> set[date]:
    return set(ctx.session.scalars(select(Holiday.day).where(Holiday.tenant_id == tenant_id)))


# --------------------------------------------------------------------------- calls


def classify(ctx: Context, tenant_id: int, digits: str) -> str:
    return kind_of(
        ctx.session.scalar(
            select(PhoneNumber.kind).where(
                PhoneNumber.tenant_id == tenant_id, PhoneNumber.number == digits
            )
        )
    )


def kind_of(registered: str | None) -> str:
    """A caller's classification from its number's registered kind (None: not registered)."""
    return registered or "unknown"


#: what :func:`record_call` reads, in three statements (PostgreSQL: one round trip,
#: the tenant scope included). Parameters: tenant_id, number (its digits), call_ref.
_TENANT_ID = bindparam("tenant_id", type_=Integer)
_CALL_FACTS = select(
    *quotas.USAGE_COLUMNS,  # the tenant's disk usage and the price book
    select(Tenant.status).where(Tenant.id == _TENANT_ID).scalar_subquery().label("status"),
    select(PhoneNumber.kind)
    .where(PhoneNumber.tenant_id == _TENANT_ID, PhoneNumber.number == bindparam("number"))
    .limit(1)
    .scalar_subquery()
    .label("kind"),
    select(CtiContract.started_on)
    .where(CtiContract.tenant_id == _TENANT_ID)
    .scalar_subquery()
    .label("started_on"),
    select(CtiContract.cancelled_on)
    .where(CtiContract.tenant_id == _TENANT_ID)
    .scalar_subquery()
    .label("cancelled_on"),
    select(CallRecord.id)
    .where(CallRecord.tenant_id == _TENANT_ID, CallRecord.call_ref == bindparam("call_ref"))
    .scalar_subquery()
    .label("existing_id"),
)
_HOURS = select(BusinessHours.weekday, BusinessHours.opens, BusinessHours.closes).where(
    BusinessHours.tenant_id == _TENANT_ID
)
_HOLIDAYS = select(Holiday.day).where(Holiday.tenant_id == _TENANT_ID)
_CALL_READS: tuple[Any, ...] = (_CALL_FACTS, _HOURS, _HOLIDAYS)
#: the columns a call is recorded with (its note comes later: ``add_contact_history``)
_CALL_COLUMNS = (
    "tenant_id",
    "at",
    "number",
    "classification",
    "in_hours",
    "charge_jpy",
    "recorded_by",
    "call_ref",
    "contact_id",
    "contact_note",
)


@dataclass(frozen=True)
class _CallFacts:
    """What a call's price depends on: the facts row, business hours and holidays rows."""

    facts: Any
    hours: list[Any]
    holidays: list[Any]


def _call_input(number: str, call_ref: str | None) -> tuple[str, str | None]:
    """The caller's digits and the call id as recorded (ValidationFailed: not valid)."""
    digits = normalize_number(number)
    if call_ref is not None:
        call_ref = call_ref.strip()
        if not 1 <= len(call_ref) <= 100:
            raise ValidationFailed("a call id has 1 to 100 characters")
    return digits, call_ref


def _scope_to_send(ctx: Context, tenant_id: int) -> int | None:
    """The tenant scope a pipelined read must set (None: the transaction has it)."""
    return tenant_id if ctx.scoped_tenant != tenant_id else None


def _call_reads(ctx: Context, tenant_id: int, digits: str, call_ref: str | None) -> _CallFacts:
    """What :func:`record_call` prices the call from: one round trip on PostgreSQL (scope
    included), statement by statement else."""
    values = {"tenant_id": tenant_id, "number": digits, "call_ref": call_ref}
    if ctx.postgres:
        facts, hours, days = ctx.run_pipelined(
            _CALL_READS, values, tenant_id=_scope_to_send(ctx, tenant_id)
        )
        return _CallFacts(facts[0], hours, days)
    ctx.enter_tenant(tenant_id)
    if ctx.session.autoflush:
        ctx.session.flush()  # as session.execute would: rows written in this transaction
    run = ctx.session.connection().execute  # Core statements: no ORM execution
    return _CallFacts(
        run(_CALL_FACTS, values).one(), list(run(_HOURS, values)), list(run(_HOLIDAYS, values))
    )


def _price(
    ctx: Context,
    actor: Actor,
    digits: str,
    call_ref: str | None,
    read: _CallFacts,
    at: datetime | None,
) -> CallRecord:
    """The call recorded under ``call_ref`` already, else a new call (not yet added to
    the session: :func:`_write`) classified and priced; refused (nothing written) for a
    call id recorded from another number, a tenant that is not active, or no room left
    in the tenant's disk quota."""
    facts = read.facts
    if facts.existing_id is not None:
        existing = ctx.session.get(CallRecord, facts.existing_id)
        assert existing is not None
        if existing.number != digits:
            raise ValidationFailed(
                f"call {call_ref!r} was recorded from another number",
                hint="a call id names one call",
            )
        return existing
    require_tenant(actor.tenant_slug, facts.status)
    quotas.check_room(
        actor.tenant_slug, quotas.CALL_RECORD_BYTES, quotas.usage_of(facts), what="a call record"
    )
    when = at or ctx.clock.now()
    kind = kind_of(facts.kind)
    inside = in_business_hours(when, hours_of(read.hours), {r.day for r in read.holidays})
    contract = None if facts.started_on is None else Term(facts.started_on, facts.cancelled_on)
    billable = in_contract(contract, when.astimezone(TOKYO).date())
    return CallRecord(
        tenant_id=actor.tenant_id,
        at=when,
        number=digits,
        classification=kind,
        in_hours=inside,
        charge_jpy=charge(kind, inside, prices_of(facts.price_book)) if billable else 0,
        recorded_by=actor.login,
        call_ref=call_ref,
    )


_CR = CallRecord.__table__.c
#: PostgreSQL: a new call's row (parameters: :func:`_row_values`), sent with its
#: ``call_bytes`` update in one round trip (:func:`_write`)
_INSERT_CALL = (
    insert(CallRecord).values({name: bindparam(name) for name in _CALL_COLUMNS}).returning(_CR.id)
)


def _row_values(call: CallRecord) -> dict[str, Any]:
    return {name: getattr(call, name) for name in _CALL_COLUMNS}


def _write(ctx: Context, call: CallRecord) -> None:
    """Write a new call (a call already recorded is in the session: flushed with it).

    PostgreSQL: the row's ``INSERT ... RETURNING id`` and its tenant's ``call_bytes``
    update in one round trip (``call_usage.UPSERT``: the figure the ORM flush hook keeps
    for the other writers); else the ORM's flush, whose hook updates ``call_bytes``."""
    if ctx.read_only:
        raise RuntimeError("a metered call is a write: not in a read-only transaction")
    if call.id is not None:
        return
    if ctx.postgres:
        inserted, _ = ctx.run_pipelined(
            (_INSERT_CALL, call_usage.UPSERT),
            {**_row_values(call), **call_usage.new_call(call.tenant_id, call.contact_note)},
            tenant_id=_scope_to_send(ctx, call.tenant_id),
        )
        call.id = inserted[0].id  # (the row is not in the session: nothing else writes it)
        return
    ctx.session.add(call)
    ctx.session.flush()  # its id, and the tenant's call_bytes (call_usage's flush hook)


def record_call(
    ctx: Context,
    actor: Actor,
    number: str,
    *,
    at: datetime | None = None,
    call_ref: str | None = None,
) -> CallRecord:
    """Record an incoming call (any member of the tenant: the operator who took it).

    ``call_ref``: the telephony side's call id; a call already recorded with it is
    returned as it is (recorded and charged once). A write: never in a read-only
    transaction.

    Everything the call's price depends on (the tenant, its disk usage, the number's
    kind, business hours, holidays, the contract, the price book, a call already
    recorded under ``call_ref``) is read in three statements, one round trip on
    PostgreSQL (:func:`_call_reads`).
    """
    digits, call_ref = _call_input(number, call_ref)
    call = _price(
        ctx, actor, digits, call_ref, _call_reads(ctx, actor.tenant_id, digits, call_ref), at
    )
    _write(ctx, call)
    return call


def call_summary(row: CallRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "ref": row.call_ref,
        "number": row.number,
        "classification": row.classification,
        "in_hours": row.in_hours,
        "charge_jpy": row.charge_jpy,
        "at": format_instant(as_utc(row.at)),
        "contact_id": row.contact_id,
    }


def _pipelined_reads(
    ctx: Context, actor: Actor, digits: str, call_ref: str | None, wanted: str, history: int
) -> tuple[_CallFacts, search.Found]:
    """PostgreSQL: the call's reads and the lookup's in one round trip (the tenant scope,
    the call's three statements and ``search.PIPELINED``)."""
    results = ctx.run_pipelined(
        (*_CALL_READS, *search.PIPELINED),
        {
            "tenant_id": actor.tenant_id,
            "number": digits,
            "call_ref": call_ref,
            **search.lookup_values(actor, wanted, history),
        },
        tenant_id=_scope_to_send(ctx, actor.tenant_id),
    )
    facts, hours, days = results[: len(_CALL_READS)]
    found = search.Found.of_pipeline(results[len(_CALL_READS) :])
    return _CallFacts(facts[0], hours, days), found


def screen_pop(
    ctx: Context,
    actor: Actor,
    number: str,
    *,
    call_ref: str | None = None,
    at: datetime | None = None,
    history: int = 5,
    codes: bool = False,
) -> dict[str, Any]:
    """The caller's card (``search.lookup``'s; labels, or codes with ``codes``) and the
    metered call, in one act and one transaction (a write: never a read-only one).

    The call is recorded (and charged) once per ``call_ref``; without one, each
    pop-up is a call. A number no customer has is recorded too, then NotFound (the
    transaction commits the call and nothing else). Any other refusal (the call's:
    quota, tenant, a call id from another number; the lookup's: its permission) or
    failure records nothing: the call is written in the caller's transaction, which
    rolls back. The refusals come in the order of a call recorded before its lookup.

    Reads: the call's pricing and the lookup's rows in one round trip on PostgreSQL
    (:func:`_pipelined_reads`), then the call's INSERT with its ``call_bytes`` update (one
    more, :func:`_write`); the card's customer is the call's ``contact_id`` from the start.
    """
    digits, call_ref = _call_input(number, call_ref)
    try:
        wanted = search.caller_digits(number)
    except ValidationFailed:  # the call's own refusals come first (nothing is written)
        _price(
            ctx, actor, digits, call_ref, _call_reads(ctx, actor.tenant_id, digits, call_ref), at
        )
        raise
    found: search.Found | None = None
    if ctx.postgres:
        read, found = _pipelined_reads(ctx, actor, digits, call_ref, wanted, history)
    else:
        read = _call_reads(ctx, actor.tenant_id, digits, call_ref)
    call = _price(ctx, actor, digits, call_ref, read, at)
    try:
        if found is None:  # statement by statement: the lookup's permission check, its reads
            found = search.read(ctx, actor, wanted, history)
        card = search.card(ctx, actor, number, found, codes=codes)
    except NotFound:
        _write(ctx, call)
        ctx.keep_writes_on_error()  # the unknown caller's call stays recorded
        raise
    if call.contact_id is None:
        call.contact_id = card["contact"]["id"]
    _write(ctx, call)
    card["call"] = call_summary(call)
    return card


def _find_call(ctx: Context, actor: Actor, call_id: int | None, call_ref: str | None) -> CallRecord:
    if call_ref is not None:
        row = ctx.session.scalar(
            select(CallRecord).where(
                CallRecord.tenant_id == actor.tenant_id, CallRecord.call_ref == call_ref
            )
        )
        if row is None:
            raise NotFound(f"no call {call_ref!r} in tenant {actor.tenant_slug!r}")
        return row
    row = ctx.session.get(CallRecord, call_id) if call_id is not None else None
    if row is None or row.tenant_id != actor.tenant_id:
        raise NotFound(f"no call {call_id} in tenant {actor.tenant_slug!r}")
    return row


def add_contact_history(
    ctx: Context, actor: Actor, call_id: int | None, note: str, *, call_ref: str | None = None
) -> CallRecord:
    """A note typed during a call: kept on the call and, when a customer has the
    caller's number, added to that customer's activities (contact history) through
    ``records.create`` (permissions, input rules and workflow rules apply)."""
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "records.write", "enter contact history")
    row = _find_call(ctx, actor, call_id, call_ref)
    name = call_ref if call_ref is not None else call_id
    if row.classification == "nuisance":
        raise PermissionDenied(
            f"call {name} is from a number registered as a nuisance caller; no contact "
            "history can be entered for it"
        )
    if not note.strip():
        raise ValidationFailed("the contact history is empty")
    tenant = get_tenant(ctx, actor.tenant_slug)
    quotas.require_room(ctx, tenant, len(note.encode()), what="the contact history")
    contact_id = row.contact_id if row.contact_id is not None else _caller(ctx, actor, row.number)
    if contact_id is not None:
        doc = scope.config(ctx, actor.tenant_id)
        kinds = {
            v.code for p in doc.picklists if p.code == "activity_kind" for v in p.values if v.active
        }
        values = {
            "contact_id": contact_id,
            "content": note.strip(),
            "staff": actor.login,
            "date": as_utc(row.at).astimezone(TOKYO).date().isoformat(),
            "kind": "phone" if "phone" in kinds else "",
        }
        records.create(ctx, actor, "activity", values, purpose=f"CTI call {name} from {row.number}")
        row.contact_id = contact_id
    row.contact_note = ((row.contact_note + "\n") if row.contact_note else "") + note.strip()
    return row


def _caller(ctx: Context, actor: Actor, number: str) -> int | None:
    """The first customer (lowest id) with the number, as the screen pop shows it."""
    scope.enter(ctx, actor)
    digits = phone_digits(number)
    found: int | None = ctx.session.scalar(
        select(CrmContact.id)
        .where(
            CrmContact.tenant_id == actor.tenant_id,
            or_(CrmContact.phone_digits == digits, CrmContact.mobile_digits == digits),
        )
        .order_by(CrmContact.id)
        .limit(1)
    )
    return found


# --------------------------------------------------------------------------- contract, statement


def set_contract(
    ctx: Context,
    slug: str,
    *,
    started_on: date,
    seats: int,
    maintenance_jpy: int | None = None,
    seat_fee_jpy: int | None = None,
    mobile_connections: int = 0,
    mobile_pack_jpy: int | None = None,
    initial_jpy: int | None = None,
    list_input: bool = False,
    list_input_jpy: int | None = None,
    by: str,
) -> CtiContract:
    """Set a tenant's CTI contract. A price not given is the price book's list price
    (``cti_*_jpy``); given, it overrides the list price for this contract. The
    list-input option is taken with ``list_input`` (monthly, ``cti_list_input_jpy``)."""
    tenant = get_tenant(ctx, slug)
    ctx.enter_tenant(tenant.id)  # an operator command on this tenant's contract
    book = price_book(ctx)

    def price(given: int | None, key: str) -> int:
        return book[key] if given is None else given

    fees = {
        "maintenance": price(maintenance_jpy, "cti_maintenance_jpy"),
        "seat fee": price(seat_fee_jpy, "cti_seat_jpy"),
        "pack price": price(mobile_pack_jpy, "cti_mobile_pack_jpy"),
        "initial fee": price(initial_jpy, "cti_initial_jpy"),
        "list-input option": (
            price(list_input_jpy, "cti_list_input_jpy") if list_input or list_input_jpy else 0
        ),
    }
    problems = [
        f"{name} must be >= 0"
        for name, value in (
            *fees.items(),
            ("seats", seats),
            ("mobile connections", mobile_connections),
        )
        if value < 0
    ]
    if problems:
        raise ValidationFailed("invalid CTI contract", problems=problems)
    row = ctx.session.scalar(select(CtiContract).where(CtiContract.tenant_id == tenant.id))
    if row is None:
        row = CtiContract(
            tenant_id=tenant.id,
            started_on=started_on,
            maintenance_jpy=fees["maintenance"],
            seat_fee_jpy=fees["seat fee"],
            seats=seats,
        )
        ctx.session.add(row)
    elif row.cancelled_on is not None:
        raise PlanConflict(f"the CTI contract of {slug!r} was cancelled")
    row.maintenance_jpy, row.seat_fee_jpy, row.seats = fees["maintenance"], fees["seat fee"], seats
    row.mobile_connections, row.mobile_pack_jpy = mobile_connections, fees["pack price"]
    row.initial_jpy, row.list_input_jpy = fees["initial fee"], fees["list-input option"]
    audit.record(
        ctx,
        tenant_id=tenant.id,
        actor=by,
        action="cti_contract:set",
        subject=slug,
        started_on=started_on.isoformat(),
        seats=seats,
        mobile_connections=mobile_connections,
        fees=fees,
    )
    return row


def _contract(ctx: Context, tenant_id: int, slug: str) -> CtiContract:
    row = ctx.session.scalar(select(CtiContract).where(CtiContract.tenant_id == tenant_id))
    if row is None:
        raise NotFound(f"tenant {slug!r} has no CTI contract")
    return row


def cancel_contract(ctx: Context, slug: str, *, on: date, by: str) -> CtiContract:
    tenant = get_tenant(ctx, slug)
    ctx.enter_tenant(tenant.id)  # an operator command on this tenant's contract
    row = _contract(ctx, tenant.id, slug)
    if row.cancelled_on is not None:
        raise PlanConflict(f"the CTI contract of {slug!r} is already cancelled")
    if on < row.started_on:
        raise ValidationFailed("cannot cancel before the contract starts")
    row.cancelled_on = on
    row.cancellation_fee_jpy = early_cancellation_fee(
        row.started_on,
        on,
        maintenance_jpy=row.maintenance_jpy,
        minimum_months=price_book(ctx)["cti_minimum_term_months"],
    )
    audit.record(
        ctx,
        tenant_id=tenant.id,
        actor=by,
        action="cti_contract:cancelled",
        subject=slug,
        on=on.isoformat(),
        fee=row.cancellation_fee_jpy,
    )
    return row


@dataclass
class Statement:
    tenant: str
    month: str
    calls: dict[str, dict[str, int]]
    lines: list[dict[str, Any]]

    @property
    def total(self) -> int:
        return sum(int(line["amount"]) for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "month": self.month,
            "currency": "JPY",
            "calls": self.calls,
            "lines": self.lines,
            "total": self.total,
        }


def statement(ctx: Context, actor: Actor, month: str) -> Statement:
    require_admin(actor, "read the CTI statement")
    ctx.enter_tenant(actor.tenant_id)  # the tenant's calls and contract
    start, end = month_bounds(month)
    calls: dict[str, dict[str, int]] = {
        k: {"calls": 0, "in_hours": 0, "out_of_hours": 0, "amount": 0} for k in (*KINDS, "unknown")
    }
    for row in ctx.session.scalars(
        select(CallRecord).where(
            CallRecord.tenant_id == actor.tenant_id, CallRecord.at >= start, CallRecord.at < end
        )
    ):
        entry = calls[row.classification]
        entry["calls"] += 1
        entry["in_hours" if row.in_hours else "out_of_hours"] += 1
        entry["amount"] += row.charge_jpy
    lines: list[dict[str, Any]] = [
        {"item": f"pop-ups: {kind}", "quantity": v["in_hours"], "amount": v["amount"]}
        for kind, v in calls.items()
        if v["calls"]
    ]
    contract = ctx.session.scalar(
        select(CtiContract).where(CtiContract.tenant_id == actor.tenant_id)
    )
    if contract is not None and billed_month(contract, month):
        pack = price_book(ctx)["cti_mobile_pack_size"]
        lines.append({"item": "maintenance", "quantity": 1, "amount": contract.maintenance_jpy})
        lines.append(
            {
                "item": "seats",
                "quantity": contract.seats,
                "amount": contract.seats * contract.seat_fee_jpy,
            }
        )
        if contract.mobile_connections:
            packs = mobile_packs(contract.mobile_connections, pack)
            lines.append(
                {
                    "item": f"mobile connections (packs of {pack})",
                    "quantity": packs,
                    "amount": packs * contract.mobile_pack_jpy,
                }
            )
        if contract.list_input_jpy:
            lines.append(
                {"item": "list-input option", "quantity": 1, "amount": contract.list_input_jpy}
            )
        if contract.initial_jpy and month == contract.started_on.strftime("%Y-%m"):
            lines.append({"item": "initial fee", "quantity": 1, "amount": contract.initial_jpy})
        if (
            contract.cancelled_on is not None
            and contract.cancellation_fee_jpy
            and month == contract.cancelled_on.strftime("%Y-%m")
        ):
            lines.append(
                {
                    "item": "early cancellation fee",
                    "quantity": 1,
                    "amount": contract.cancellation_fee_jpy,
                }
            )
    return Statement(actor.tenant_slug, month, calls, lines)
