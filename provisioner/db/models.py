"""Typed ORM models of the core (tenants, users, configuration, keys, transfers, audit).

Conventions:

* every tenant-scoped table has a non-null ``tenant_id`` (listed in
  :data:`TENANT_TABLES`; on PostgreSQL row-level security is keyed on it);
* uniqueness is per tenant unless a value is global by nature (slug, login,
  copy-key selector, signing key id);
* configuration versions are insert-only: a change is a new row, and
  ``tenants.config_version`` points at the current one;
* instants are timezone-aware UTC (``DateTime(timezone=True)``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, object_session

from provisioner.db import plans
from provisioner.db.base import NAMING, Base

__all__ = ["NAMING", "Base"]  # re-exported: the declarative base lives in db/base.py


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(20))
    is_sandbox: Mapped[bool] = mapped_column(Boolean, default=False)
    integrations_active: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="active")
    config_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]
    # provisioning (migration 0003_provisioning): the tenant group (contract), if any
    group_id: Mapped[int | None] = mapped_column(ForeignKey("tenant_groups.id"), index=True)
    # users (migration 0011_users): how many users it may register; None: no limit
    licensed_users: Mapped[int | None] = mapped_column(Integer)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("tenant_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime]
    # users (migration 0011_users): disabled in this tenant; department from the master
    disabled_at: Mapped[datetime | None]
    department_id: Mapped[int | None] = mapped_column(ForeignKey("user_departments.id"))


class UserDepartment(Base):
    """The tenant's user department master (REQUIREMENTS C: masters)."""

    __tablename__ = "user_departments"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    code: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class StoredDocument(Base):
    """A configuration document stored once per distinct content, addressed by its digest.

    Shared content without a tenant (like a reference table): a document is
    reachable only through a tenant's own rows that name its digest (a version,
    a transfer). Insert-only: the same digest always means the same bytes.
    """

    __tablename__ = "config_documents"

    #: ``"sha256:" + SHA-256(body)``
    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    #: RFC 8785 canonical JSON, UTF-8 (a whole document, or a transfer's sections)
    body: Mapped[bytes]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class ConfigVersion(Base):
    __tablename__ = "config_versions"
    #: disk usage sums ``size_bytes`` from this index alone, never from the (large) rows
    __table_args__ = (Index("ix_config_versions_tenant_id_size_bytes", "tenant_id", "size_bytes"),)

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: the document's ``"sha256:" + SHA-256`` of its RFC 8785 bytes. Without ``base_digest``
    #: the document itself is stored under this digest (``config_documents``)
    digest: Mapped[str] = mapped_column(String(80))
    #: the stored document this version differs from by ``delta`` (None: stored whole)
    base_digest: Mapped[str | None] = mapped_column(ForeignKey("config_documents.digest"))
    #: :mod:`provisioner.config.delta` from the ``base_digest`` document, as JSON
    delta: Mapped[bytes | None]
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(100))
    origin: Mapped[str] = mapped_column(String(200))
    #: UTF-8 bytes of the whole document, its logical size: disk usage and billing sum it
    #: however it is stored (see services.provisioning.quotas)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class SigningKey(Base):
    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[bytes]
    wrapped_key: Mapped[bytes]
    ciphertext: Mapped[bytes]
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]


class TrustedPublisher(Base):
    __tablename__ = "trusted_publishers"
    __table_args__ = (UniqueConstraint("tenant_id", "key_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_id: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[bytes]
    label: Mapped[str] = mapped_column(String(200))
    policy: Mapped[str] = mapped_column(String(20), default="manual")
    added_at: Mapped[datetime]
    added_by: Mapped[str] = mapped_column(String(100))


class CopyKeyRow(Base):
    __tablename__ = "copy_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    selector: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[bytes]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_transfer: Mapped[int | None] = mapped_column(Integer)
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(100))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)


class KeyFailure(Base):
    """A failed copy-key redemption, kept for rate limiting and audit."""

    __tablename__ = "key_failures"
    __table_args__ = (Index("ix_key_failures_actor_at", "actor", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    actor: Mapped[str] = mapped_column(String(200))  # "tenant:<slug>" or "ip:<addr>"
    selector: Mapped[str | None] = mapped_column(String(16), index=True)
    at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(300))


class Throttle(Base):
    """Failed attempts of one party (a login id from one client address, or a client
    address): the login throttle's counters, in the database so a restart keeps them."""

    __tablename__ = "throttles"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime]
    blocked_until: Mapped[datetime | None]


class DerivedData(Base):
    """Which version of the code computed a kind of derived data (``search``, ``usage``):
    ``provisioner init`` rebuilds it when the release's is newer (services/reindex.py)."""

    __tablename__ = "derived_data"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime]


class Transfer(Base):
    __tablename__ = "transfers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "bundle_id"),
        #: disk usage sums ``envelope_bytes`` from this index alone, never from the rows
        Index("ix_transfers_tenant_id_envelope_bytes", "tenant_id", "envelope_bytes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    bundle_id: Mapped[str] = mapped_column(String(40))
    payload_digest: Mapped[str] = mapped_column(String(80))
    signer_key_id: Mapped[str] = mapped_column(String(64))
    source_tenant: Mapped[str] = mapped_column(String(63))
    source_name: Mapped[str] = mapped_column(String(200))
    source_version: Mapped[int] = mapped_column(Integer)
    source_digest: Mapped[str] = mapped_column(String(80))
    copy_key_id: Mapped[int | None] = mapped_column(ForeignKey("copy_keys.id"))
    # The heavy columns load only when used: the bundle as received, its configuration
    # sections validated and normalised at receipt, and the plan.
    #: the bundle file -- or, when ``payload_frame`` is set, the file with its payload
    #: cut out, the payload being the ``incoming_digest`` document in that frame
    #: (``bundles.payload.split_file``; ``services.transfers.bundle_file`` gives back the
    #: exact file) -- or empty, when ``payload_frame`` is ``{"file": digest}``: the file
    #: without its payload and its frame are that ``config_documents`` document, stored
    #: once per distinct content (``services.transfers.file_document``: the targets of a
    #: rollout share it)
    envelope: Mapped[bytes] = mapped_column(deferred=True)
    payload_frame: Mapped[dict[str, Any] | None] = mapped_column(deferred=True)
    #: bytes of the bundle file (disk usage sums it)
    envelope_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: the digest of the configuration sections as UTF-8 RFC 8785 JSON (what approval
    #: applies), stored once per distinct content in ``config_documents`` as they were
    #: verified, with no decoding and re-encoding of megabytes
    incoming_digest: Mapped[str] = mapped_column(ForeignKey("config_documents.digest"))
    base_version: Mapped[int] = mapped_column(Integer)
    #: the plan as stored: whole, or a rollout target's own part naming the part it shares
    #: with other targets (``db.plans``); :attr:`plan` is the whole plan
    stored_plan: Mapped[dict[str, Any]] = mapped_column("plan", deferred=True)
    received_at: Mapped[datetime]
    received_by: Mapped[str] = mapped_column(String(100))
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    applied_version: Mapped[int | None] = mapped_column(Integer)
    rolled_back_at: Mapped[datetime | None]

    @property
    def plan(self) -> dict[str, Any]:
        """The whole plan (a new dict: the caller's own), its shared part read if stored
        apart (``db.plans``)."""
        return plans.load(object_session(self), self.stored_plan)

    @plan.setter
    def plan(self, value: dict[str, Any]) -> None:
        self.stored_plan = value


class LineageEntry(Base):
    """What an applied transfer was based on: the base of the next upgrade from its source.

    The source's document *as it arrived* is the transfer's ``incoming_digest``
    document (stored once per distinct content, in ``config_documents``);
    ``sections`` are those whose base moved (all the bundle's sections, or the
    ``--only`` ones). An entry counts while its
    transfer is ``applied``: rolling the transfer back restores the previous base.
    """

    __tablename__ = "config_lineage"
    __table_args__ = (Index("ix_config_lineage_tenant_id_source", "tenant_id", "source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    #: ``tenant:<slug>`` (a source verified in this deployment) or ``key:<key id>`` (a
    #: pinned publisher or another deployment's tenant, known by its signing key)
    source: Mapped[str] = mapped_column(String(100))
    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfers.id"), unique=True)
    source_version: Mapped[int] = mapped_column(Integer)
    source_digest: Mapped[str] = mapped_column(String(80))
    bundle_digest: Mapped[str] = mapped_column(String(80))
    sections: Mapped[list[Any]]
    applied_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))  # "subject:action", e.g. "transfer:approved"
    subject: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]]


#: Tables whose rows belong to one tenant (row-level security is keyed on tenant_id).
TENANT_TABLES: tuple[str, ...] = (
    "memberships",
    "config_versions",
    "signing_keys",
    "trusted_publishers",
    "copy_keys",
    "transfers",
    "config_lineage",
)
