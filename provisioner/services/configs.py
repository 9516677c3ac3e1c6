"""A tenant's configuration: immutable versions and a current pointer.

Every change (``config set``, an approved transfer, a rollback) inserts a new
``config_versions`` row and moves ``tenants.config_version`` with a guarded
update (``WHERE config_version = <the version the change was based on>``), so
two concurrent changes can never both win. Versions are never updated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    DateTime,
    Text,
    cast,
    func,
    insert,
    literal,
    literal_column,
    select,
    update,
)

from provisioner.canonical import canonical_bytes, sha256_hex
from provisioner.config import diff as config_diff
from provisioner.config.defaults import default_document
from provisioner.config.document import ConfigDocument
from provisioner.config.merge import combine
from provisioner.config.validate import document_from_data, sections_from_data
from provisioner.db.models import ConfigVersion, Tenant, Transfer
from provisioner.errors import NotFound, PlanConflict
from provisioner.services import audit
from provisioner.services.actors import Actor, require_admin
from provisioner.services.context import Context


@dataclass(frozen=True)
class Current:
    version: int
    digest: str
    data: dict[str, Any]


def _load(ctx: Context, tenant_id: int, version: int) -> ConfigVersion:
    row = ctx.session.get(ConfigVersion, (tenant_id, version))
    if row is None:
        raise NotFound(f"configuration version {version} does not exist",
                       hint="'provisioner config history' lists the versions")
    return row


def version_data(ctx: Context, tenant_id: int, version: int) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(_load(ctx, tenant_id, version).document)
    return data


def current_text(ctx: Context, tenant: Tenant) -> tuple[int, str, bytes]:
    """(version, digest, RFC 8785 bytes) of the current document, without parsing it."""
    if tenant.config_version is None:
        raise NotFound(f"tenant {tenant.slug!r} has no configuration")
    row = _load(ctx, tenant.id, tenant.config_version)
    return row.version, row.digest, row.document.encode("utf-8")


def current(ctx: Context, tenant: Tenant) -> Current:
    if tenant.config_version is None:
        raise NotFound(f"tenant {tenant.slug!r} has no configuration")
    row = _load(ctx, tenant.id, tenant.config_version)
    return Current(row.version, row.digest, orjson.loads(row.document))


def commit_version(ctx: Context, tenant: Tenant,
                   doc: ConfigDocument | Mapping[str, Any] | bytes, *,
                   author: str | None, origin: str, base_version: int | None) -> int | None:
    """Insert ``doc`` as the next version and point the tenant at it.

    ``doc`` must already be validated (as bytes: a whole document's RFC 8785
    form). Returns the new version, or None when the document equals the current
    one (nothing is written: a no-op change). Raises PlanConflict if the tenant
    moved away from ``base_version``.
    """
    if isinstance(doc, bytes):
        body = doc
    else:
        body = canonical_bytes(doc.to_data() if isinstance(doc, ConfigDocument) else dict(doc))
    digest = "sha256:" + sha256_hex(body)
    if base_version is not None:
        head = _load(ctx, tenant.id, base_version)
        if head.digest == digest:
            return None
    _require_room(ctx, tenant, len(body))
    new_version = _move_pointer(ctx, tenant, base_version)  # first: see _move_pointer
    ctx.session.add(ConfigVersion(
        tenant_id=tenant.id, version=new_version, document=body.decode("utf-8"), digest=digest,
        size_bytes=len(body),
        created_at=ctx.clock.now(), created_by=author, origin=origin,
    ))
    ctx.session.flush()
    tenant.config_version = new_version
    return new_version


def commit_transfer_copy(ctx: Context, tenant: Tenant, transfer_id: int, digest: str, *,
                         author: str, base_version: int) -> int | None:
    """:func:`commit_version` of a transfer's stored incoming document, copied in the database.

    For a whole-document transfer the stored sections already are the new
    version's RFC 8785 text (``digest`` is theirs, taken at receipt): the
    database copies the text from row to row, it never travels through Python.
    """
    if _load(ctx, tenant.id, base_version).digest == digest:
        return None
    size = ctx.session.scalar(select(func.length(Transfer.incoming))  # bytes: it is binary
                              .where(Transfer.id == transfer_id))
    _require_room(ctx, tenant, int(size or 0))
    new_version = _move_pointer(ctx, tenant, base_version)
    # the UTF-8 bytes become text as they are (PostgreSQL checks they are UTF-8)
    document = (func.convert_from(Transfer.incoming, literal_column("'UTF8'"))
                if ctx.session.get_bind().dialect.name == "postgresql"
                else cast(Transfer.incoming, Text))
    ctx.session.execute(
        insert(ConfigVersion).from_select(
            ["tenant_id", "version", "document", "digest", "created_at", "created_by", "origin",
             "size_bytes"],
            select(literal(tenant.id), literal(new_version), document, literal(digest),
                   literal(ctx.clock.now(), DateTime()), literal(author),
                   literal(f"transfer:{transfer_id}"), literal(int(size or 0)))
            .where(Transfer.id == transfer_id, Transfer.tenant_id == tenant.id)))
    tenant.config_version = new_version
    return new_version


def _require_room(ctx: Context, tenant: Tenant, size: int) -> None:
    """Refuse a new version that would take the tenant over its disk quota (nothing written)."""
    from provisioner.services.provisioning import quotas  # provisioning builds on configs

    quotas.require_room(ctx, tenant, size, what="this configuration version")


def _move_pointer(ctx: Context, tenant: Tenant, base_version: int | None) -> int:
    """Point the tenant at the next version, guarded by the version the change was based on.

    Of concurrent changes based on the same version exactly one matches the
    guard (the others wait for its row lock, then match nothing), so the losers
    never reach the insert and get a clear conflict, not a key violation.
    """
    new_version = (base_version or 0) + 1
    guard = Tenant.config_version.is_(None) if base_version is None else (
        Tenant.config_version == base_version)
    moved = ctx.session.execute(
        update(Tenant).where(Tenant.id == tenant.id, guard)
        .values(config_version=new_version).execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise PlanConflict(
            f"the configuration of {tenant.slug!r} changed while this change was being made",
            hint="look at the new version ('provisioner config history') and run the "
            "command again",
        )
    return new_version


def initialise(ctx: Context, tenant: Tenant, *, author: str | None,
               doc: ConfigDocument | None = None, origin: str = "initial") -> int:
    version = commit_version(ctx, tenant, doc or default_document(), author=author,
                             origin=origin, base_version=None)
    assert version == 1
    return version


def set_sections(ctx: Context, actor: Actor, tenant: Tenant, data: Mapping[str, Any]) -> int | None:
    """Replace the sections present in ``data`` (a whole document or some sections)."""
    require_admin(actor, "change the configuration")
    sections = sections_from_data(data, what="file")
    head = current(ctx, tenant)
    result = combine(head.data, sections.to_data(), mode="replace", arriving=False)
    doc = document_from_data(result, what="resulting configuration")
    version = commit_version(ctx, tenant, doc, author=actor.login, origin="set",
                             base_version=head.version)
    if version is not None:
        changes = config_diff.diff(head.data, doc.to_data())
        audit.record(ctx, tenant_id=tenant.id, actor=actor.login, action="config:set",
                     subject=f"version:{version}", from_version=head.version,
                     sections=list(sections.present()),
                     summary=config_diff.summarize(changes))
    return version


def history(ctx: Context, tenant: Tenant) -> list[ConfigVersion]:
    return list(ctx.session.scalars(
        select(ConfigVersion).where(ConfigVersion.tenant_id == tenant.id)
        .order_by(ConfigVersion.version)
    ))


def diff_versions(ctx: Context, tenant: Tenant, old: int, new: int) -> list[config_diff.Change]:
    return config_diff.diff(version_data(ctx, tenant.id, old), version_data(ctx, tenant.id, new))


def rollback(ctx: Context, actor: Actor, tenant: Tenant, to_version: int, *,
             reason: str | None = None) -> int | None:
    """Make version ``to_version``'s document current again, as a new version."""
    require_admin(actor, "roll back the configuration")
    head = current(ctx, tenant)
    if to_version >= head.version:
        raise PlanConflict(
            f"version {to_version} is not older than the current version {head.version}",
            hint="'provisioner config history' lists the versions",
        )
    target = version_data(ctx, tenant.id, to_version)
    version = commit_version(ctx, tenant, target, author=actor.login,
                             origin=f"rollback:{to_version}", base_version=head.version)
    undone = ctx.session.execute(
        update(Transfer)
        .where(Transfer.tenant_id == tenant.id, Transfer.status == "applied",
               Transfer.applied_version > to_version)
        .values(status="rolled_back", rolled_back_at=ctx.clock.now())
        .returning(Transfer.id)
    ).scalars().all()
    audit.record(ctx, tenant_id=tenant.id, actor=actor.login, action="config:rolled_back",
                 subject=f"version:{version or head.version}", to_version=to_version,
                 from_version=head.version, reason=reason, transfers_rolled_back=list(undone))
    return version
