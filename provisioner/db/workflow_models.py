"""Typed ORM models of automation on the records (migration ``0009_workflows``).

* ``crm_record_states``: where a record stands in a blueprint (a record without a
  row is at the blueprint's initial state: nothing to write when a record is
  created or a blueprint is added);
* ``wf_executions``: the execution log, one row per rule fired on a record (under
  which configuration version, what it changed, what failed) -- or, for a bulk write,
  one row per rule and write naming every record it fired on alike (``record_ids``);
* ``wf_stats``: per workflow, how many times it fired and when last (kept with the
  log, so listing the workflows reads no log);
* ``wf_due_firings``: date-triggered firings already made (its key makes each due
  firing happen once, whichever process or restart runs the scheduler);
* ``notifications``: the per-user inbox that ``notify`` actions fill.

Every table carries ``tenant_id`` (row-level security on PostgreSQL, as the CRM
tables).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db.base import Base

_ID = BigInteger().with_variant(Integer, "sqlite")


class CrmRecordState(Base):
    __tablename__ = "crm_record_states"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    record_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    record_id: Mapped[int] = mapped_column(_ID, primary_key=True)
    blueprint: Mapped[str] = mapped_column(String(63), primary_key=True)
    state: Mapped[str] = mapped_column(String(63))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(100))


#: the widest range of record ids one execution-log row of a bulk write covers
#: (``last_record_id - record_id``): a record's rows are found in that window
BATCH_SPAN = 16384


class WfExecution(Base):
    """One rule fired on one record (``record_id``), or -- a bulk write -- on several
    records alike: then ``record_ids`` lists them (``"7-900,905,910-920"``: ascending
    ids and runs of ids, as :func:`provisioner.services.crm.automation.pack_ids`
    writes them), ``record_id`` is the lowest, ``last_record_id`` the highest (at
    most :data:`BATCH_SPAN` above it). A row for one record has ``record_ids`` empty
    and ``last_record_id`` null."""

    __tablename__ = "wf_executions"
    __table_args__ = (
        Index("ix_wf_executions_tenant_record", "tenant_id", "record_type", "record_id"),
        Index("ix_wf_executions_tenant_workflow_at", "tenant_id", "workflow", "at"),
        Index(
            "ix_wf_executions_tenant_batch",
            "tenant_id",
            "record_type",
            "record_id",
            "last_record_id",
            postgresql_where=text("last_record_id IS NOT NULL"),
            sqlite_where=text("last_record_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    at: Mapped[datetime]
    workflow: Mapped[str] = mapped_column(String(63))
    config_version: Mapped[int] = mapped_column(Integer)
    record_type: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[int] = mapped_column(_ID)
    trigger: Mapped[str] = mapped_column(String(20))
    depth: Mapped[int] = mapped_column(Integer, default=0)
    changes: Mapped[dict[str, Any]]
    error: Mapped[str] = mapped_column(Text, default="")
    last_record_id: Mapped[int | None] = mapped_column(_ID, default=None)
    record_ids: Mapped[str] = mapped_column(Text, default="", server_default="")


class WfStat(Base):
    """How many times a workflow fired (records it fired on) and when it last did."""

    __tablename__ = "wf_stats"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(63), primary_key=True)
    firings: Mapped[int] = mapped_column(BigInteger)
    last_fired: Mapped[datetime]


class WfDueFiring(Base):
    __tablename__ = "wf_due_firings"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(63), primary_key=True)
    record_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    record_id: Mapped[int] = mapped_column(_ID, primary_key=True)
    due_on: Mapped[date] = mapped_column(Date, primary_key=True)
    fired_at: Mapped[datetime]


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_tenant_user", "tenant_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime]
    workflow: Mapped[str] = mapped_column(String(63))
    record_type: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[int] = mapped_column(_ID)
    message: Mapped[str] = mapped_column(Text)
    read_at: Mapped[datetime | None]


#: the tables above (all tenant-scoped; row-level security on PostgreSQL)
WORKFLOW_TABLES: tuple[str, ...] = (
    "crm_record_states",
    "wf_executions",
    "wf_stats",
    "wf_due_firings",
    "notifications",
)
