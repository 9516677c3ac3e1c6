"""Typed ORM models of tenant provisioning (REQUIREMENTS A provisioning side, B and E).

* groups: one contract holding several tenants (``tenants.group_id``);
* disk add-ons per tenant; login sessions (token stored hashed, with expiry);
* rollout runs and their per-target statuses (resumable);
* CTI metering: phone numbers (customer / employee / nuisance), business hours,
  holidays, recorded calls and the CTI contract;
* the price book (one JSON row, seeded with REQUIREMENTS B prices when absent).

    run = RolloutRun(tenant_id=hq.id, ...); run.targets.append(RolloutTarget(...))
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from provisioner.db.base import Base


class TenantGroup(Base):
    __tablename__ = "tenant_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100))


class DiskAddon(Base):
    __tablename__ = "disk_addons"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    gb: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime]
    added_by: Mapped[str] = mapped_column(String(100))


class LoginSession(Base):
    """A login: the token is shown once; only its SHA-256 is stored."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)  # selected
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class RolloutRun(Base):
    __tablename__ = "rollout_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)  # the source
    bundle_id: Mapped[str] = mapped_column(String(40))
    bundle_digest: Mapped[str] = mapped_column(String(80))
    envelope: Mapped[bytes]
    status: Mapped[str] = mapped_column(String(20), default="running")
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100))
    finished_at: Mapped[datetime | None]
    targets: Mapped[list[RolloutTarget]] = relationship(
        back_populates="run", order_by="RolloutTarget.position"
    )


class RolloutTarget(Base):
    __tablename__ = "rollout_targets"
    __table_args__ = (
        UniqueConstraint("run_id", "target_slug"),
        Index("ix_rollout_targets_run_status", "run_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("rollout_runs.id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)  # the source
    position: Mapped[int] = mapped_column(Integer)
    target_slug: Mapped[str] = mapped_column(String(63))
    uses_key: Mapped[bool] = mapped_column(Boolean, default=False)  # keys are never stored
    status: Mapped[str] = mapped_column(String(20), default="pending")
    via: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    transfer_id: Mapped[int | None] = mapped_column(Integer)
    applied_version: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime | None]
    run: Mapped[RolloutRun] = relationship(back_populates="targets")


class PhoneNumber(Base):
    __tablename__ = "phone_numbers"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    number: Mapped[str] = mapped_column(String(32))  # digits only
    kind: Mapped[str] = mapped_column(String(20))  # customer | employee | nuisance
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    label: Mapped[str] = mapped_column(String(200), default="")
    added_at: Mapped[datetime]


class BusinessHours(Base):
    __tablename__ = "business_hours"
    __table_args__ = (UniqueConstraint("tenant_id", "weekday"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday
    opens: Mapped[str] = mapped_column(String(5))  # "09:00"
    closes: Mapped[str] = mapped_column(String(5))  # "18:00" (exclusive)


class Holiday(Base):
    __tablename__ = "holidays"
    __table_args__ = (UniqueConstraint("tenant_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    name: Mapped[str] = mapped_column(String(200), default="")


class CallRecord(Base):
    __tablename__ = "call_records"
    __table_args__ = (
        Index("ix_call_records_tenant_at", "tenant_id", "at"),
        Index("ix_call_records_tenant_call_ref", "tenant_id", "call_ref", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    at: Mapped[datetime]
    number: Mapped[str] = mapped_column(String(32))
    classification: Mapped[str] = mapped_column(String(20))
    in_hours: Mapped[bool] = mapped_column(Boolean)
    charge_jpy: Mapped[int] = mapped_column(Integer)
    recorded_by: Mapped[str] = mapped_column(String(100))
    contact_note: Mapped[str | None] = mapped_column(Text)
    # migration 0011_users: the telephony side's call id; the customer that popped up
    call_ref: Mapped[str | None] = mapped_column(String(100))
    contact_id: Mapped[int | None] = mapped_column(Integer)


class CallBytes(Base):
    """What a tenant's call records take on disk, maintained (migration 0022_call_bytes).

    ``calls``: the tenant's rows of ``call_records``; ``note_bytes``: the UTF-8 bytes of
    their notes. Disk usage charges ``calls * CALL_RECORD_BYTES + note_bytes``
    (:mod:`provisioner.services.provisioning.quotas`); every write of call records
    keeps the row in the same transaction
    (:mod:`provisioner.services.provisioning.call_usage`).
    """

    __tablename__ = "call_bytes"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id"), primary_key=True, autoincrement=False
    )
    calls: Mapped[int] = mapped_column(BigInteger)
    note_bytes: Mapped[int] = mapped_column(BigInteger)


class CtiContract(Base):
    __tablename__ = "cti_contracts"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), unique=True)
    started_on: Mapped[date] = mapped_column(Date)
    maintenance_jpy: Mapped[int] = mapped_column(Integer)
    seat_fee_jpy: Mapped[int] = mapped_column(Integer)
    seats: Mapped[int] = mapped_column(Integer)
    mobile_connections: Mapped[int] = mapped_column(Integer, default=0)
    mobile_pack_jpy: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_on: Mapped[date | None] = mapped_column(Date)
    cancellation_fee_jpy: Mapped[int | None] = mapped_column(Integer)
    # migration 0011_users: the initial fee and the monthly list-input option (0: not taken)
    initial_jpy: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    list_input_jpy: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PriceBook(Base):
    __tablename__ = "price_books"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    data: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(100))
