"""A tenant's configuration: immutable versions and a current pointer.

Every change (``config set``, an approved transfer, a rollback) inserts a new
``config_versions`` row and moves ``tenants.config_version`` with a guarded
update (``WHERE config_version = <the version the change was based on>``), so
two concurrent changes can never both win. Versions are never updated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import (
    Table,
    bindparam,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm.attributes import set_committed_value

from provisioner.canonical import Pieces, canonical_bytes, sha256_hex
from provisioner.config import diff as config_diff
from provisioner.config.defaults import default_document
from provisioner.config.document import SECTION_NAMES, ConfigDocument
from provisioner.config.memo import IdentityMemo
from provisioner.config.merge import combine
from provisioner.config.validate import (
    check_references,
    normalized_sections,
    require_sections,
)
from provisioner.crashpoints import crashpoint
from provisioner.db.models import ConfigVersion, StoredDocument, Tenant, Transfer
from provisioner.errors import NotFound, PlanConflict
from provisioner.services import audit, documents
from provisioner.services.actors import Actor, require_admin
from provisioner.services.transaction import Context


@dataclass(frozen=True)
class Current:
    version: int
    digest: str
    data: dict[str, Any]


def _load(ctx: Context, tenant_id: int, version: int) -> ConfigVersion:
    with ctx.of_tenant(tenant_id):  # the tenant's row (PostgreSQL row-level security)
        row = ctx.session.get(ConfigVersion, (tenant_id, version))
    if row is None:
        raise NotFound(
            f"configuration version {version} does not exist",
            hint="'provisioner config history' lists the versions",
        )
    return row


def version_data(
    ctx: Context, tenant_id: int, version: int, *, shared: bool = False
) -> dict[str, Any]:
    """The version's document: the caller's own copy, free to change -- or, ``shared``,
    built on the document cache without a copy, never to be changed."""
    return documents.version_data(ctx.session, _load(ctx, tenant_id, version), shared=shared)


def current_text(ctx: Context, tenant: Tenant) -> tuple[int, str, bytes]:
    """(version, digest, RFC 8785 bytes) of the current document, without parsing it
    when it is stored whole."""
    if tenant.config_version is None:
        raise NotFound(f"tenant {tenant.slug!r} has no configuration")
    row = _load(ctx, tenant.id, tenant.config_version)
    return row.version, row.digest, documents.version_body(ctx.session, row)


def current(ctx: Context, tenant: Tenant, *, shared: bool = False) -> Current:
    """The current version. ``shared``: its data may share parts with the document cache
    (:func:`documents.parsed`) and must not be changed -- no copy is made."""
    if tenant.config_version is None:
        raise NotFound(f"tenant {tenant.slug!r} has no configuration")
    row = _load(ctx, tenant.id, tenant.config_version)
    return Current(row.version, row.digest, documents.version_data(ctx.session, row, shared=shared))


@dataclass(frozen=True)
class NewVersion:
    """One configuration version to write: :func:`commit_versions`' unit of work."""

    tenant: Tenant
    #: the version the change was based on (None: the tenant's first version)
    base_version: int | None
    #: the whole validated document, RFC 8785 bytes (or their pieces, joined only if the
    #: document is stored whole: a rollout's results are mostly deltas)
    body: bytes | Pieces
    author: str | None
    origin: str
    #: ``"sha256:" + SHA-256(body)``, when the caller already has it
    digest: str | None = None
    #: the digest of the base version, when the caller already read it (else it is loaded)
    base_digest: str | None = None
    #: ``body`` parsed, when the caller has it (spares a parse when a delta is computed)
    data: Any = None
    #: digests of stored documents ``body`` may differ little from, best first (a template
    #: it was made from); the base version's stored document is tried after them
    near: tuple[str, ...] = ()
    #: the stored document the base version is, or differs from (its ``base_digest`` or
    #: ``digest``), when the caller already read it (else the base version is loaded)
    base_root: str | None = None

    @cached_property
    def body_digest(self) -> str:
        """``digest``, or the SHA-256 of ``body`` (computed once: the body may be megabytes)."""
        return self.digest or "sha256:" + sha256_hex(self.body)


def commit_version(
    ctx: Context,
    tenant: Tenant,
    doc: ConfigDocument | Mapping[str, Any] | bytes,
    *,
    author: str | None,
    origin: str,
    base_version: int | None,
    near: tuple[str, ...] = (),
) -> int | None:
    """Insert ``doc`` as the next version and point the tenant at it.

    ``doc`` must already be validated (as bytes: a whole document's RFC 8785
    form). Returns the new version, or None when the document equals the current
    one (nothing is written: a no-op change). Raises PlanConflict if the tenant
    moved away from ``base_version``. :func:`commit_versions` for one tenant
    (``near``: :attr:`NewVersion.near`).
    """
    data: Any = None
    if isinstance(doc, bytes):
        body = doc
    else:
        data = doc.to_data() if isinstance(doc, ConfigDocument) else dict(doc)
        body = canonical_bytes(data)
    return commit_versions(
        ctx, [NewVersion(tenant, base_version, body, author, origin, data=data, near=near)]
    )[0]


def commit_versions(
    ctx: Context,
    versions: Sequence[NewVersion],
    *,
    checked: bool = False,
    stored: set[str] | None = None,
) -> list[int | None]:
    """Write each tenant's next version and move its pointer, guarded by its base version.

    The one implementation of "a new configuration version" (``config set``,
    rollback, an approved transfer, a rollout batch of many tenants). Per item,
    in the order given, the new version number, or None when the document
    equals the base version's (nothing is written for it). Before anything is
    written, the checks the composition root registered (``ctx.checks``: the
    disk quota) run for every version that changes something, unless the caller
    already ran them (``checked``: a rollout batch checks each target's room for
    the bundle and its version together, for the whole batch at once).

    The pointers move first, in one executemany of
    ``UPDATE tenants SET config_version = :new WHERE id = :id AND config_version = :base``
    whose row count must equal the number of items: if any tenant moved away
    from its base version meanwhile, PlanConflict (naming it) is raised and the
    caller's transaction rolls back -- a lost race never overwrites. Then the
    versions are inserted (one executemany of one INSERT).

    ``stored``: digests of documents the caller knows are stored, not looked up again;
    the documents found stored or stored here are added to it
    (:func:`documents.plan_storage`: a rollout keeps it from batch to batch, adding a
    batch's digests once the batch committed).
    """
    changed: list[NewVersion] = []
    out: list[int | None] = []
    held = prefetch(  # noqa: F841 -- held: the session's identity map keeps rows weakly
        ctx,
        [
            (v.tenant.id, v.base_version)
            for v in versions
            if v.base_version is not None and (v.base_digest is None or v.base_root is None)
        ],
    )
    for item in versions:
        if item.base_version is not None and item.body_digest == (
            item.base_digest or _load(ctx, item.tenant.id, item.base_version).digest
        ):
            out.append(None)
            continue
        changed.append(item)
        out.append((item.base_version or 0) + 1)
    if not checked:
        for item in changed:
            for check in ctx.checks.new_version:
                check(ctx, item.tenant, len(item.body))
    if not changed:
        return out
    move_pointers(ctx, [(item.tenant, item.base_version) for item in changed])
    storage = documents.plan_storage(
        ctx,
        [
            (item.body_digest, item.body, item.data, (*item.near, *_root(ctx, item)))
            for item in changed
        ],
        known=stored,
    )
    now = ctx.clock.now()
    ctx.session.execute(
        insert(ConfigVersion),
        [
            {
                "tenant_id": item.tenant.id,
                "version": (item.base_version or 0) + 1,
                "digest": item.body_digest,
                "base_digest": how.base_digest,
                "delta": how.delta,
                "size_bytes": len(item.body),
                "created_at": now,
                "created_by": item.author,
                "origin": item.origin,
            }
            for item, how in zip(changed, storage, strict=True)
        ],
    )
    return out


def prefetch(ctx: Context, keys: Sequence[tuple[int, int]]) -> list[ConfigVersion]:
    """Load the versions ``keys`` (tenant id, version) name that the session does not
    hold yet, 500 per statement (a rollout batch: not one round trip per tenant).

    While the caller holds the returned rows, :func:`_load` finds them in the
    session's identity map, which references rows weakly: hold the list.
    """
    session = ctx.session
    held: list[ConfigVersion] = []
    missing: list[tuple[int, int]] = []
    for key in dict.fromkeys(keys):
        row = session.identity_map.get(session.identity_key(ConfigVersion, key))
        if row is None:
            missing.append(key)
        else:
            held.append(row)
    for start in range(0, len(missing), 500):
        held += session.scalars(
            select(ConfigVersion).where(
                tuple_(ConfigVersion.tenant_id, ConfigVersion.version).in_(
                    missing[start : start + 500]
                )
            )
        ).all()
    return held


def _root(ctx: Context, item: NewVersion) -> tuple[str, ...]:
    """The stored document the base version is (or differs from): a delta candidate."""
    if item.base_version is None:
        return ()
    if item.base_root is not None:
        return (item.base_root,)
    row = _load(ctx, item.tenant.id, item.base_version)
    return (row.base_digest or row.digest,)


def commit_transfer_copy(
    ctx: Context, tenant: Tenant, transfer_id: int, digest: str, *, author: str, base_version: int
) -> int | None:
    """:func:`commit_version` of a transfer's stored incoming document, by reference.

    For a whole-document transfer the stored sections already are the new
    version's RFC 8785 document (``digest`` is theirs, taken at receipt, and the
    document is stored under it): the new version names it, the megabytes are
    neither read nor written. The same checks and the same guarded pointer as
    :func:`commit_versions`.
    """
    if _load(ctx, tenant.id, base_version).digest == digest:
        return None
    size = ctx.session.scalar(
        select(StoredDocument.size_bytes)
        .join(Transfer, Transfer.incoming_digest == StoredDocument.digest)
        .where(Transfer.id == transfer_id, Transfer.tenant_id == tenant.id)
    )
    if size is None:
        raise NotFound(f"transfer {transfer_id} has no stored configuration")
    for check in ctx.checks.new_version:
        check(ctx, tenant, int(size))
    new_version = base_version + 1
    move_pointers(ctx, [(tenant, base_version)])
    ctx.session.execute(
        insert(ConfigVersion).values(
            tenant_id=tenant.id,
            version=new_version,
            digest=digest,
            base_digest=None,
            delta=None,
            size_bytes=int(size),
            created_at=ctx.clock.now(),
            created_by=author,
            origin=f"transfer:{transfer_id}",
        )
    )
    return new_version


_TENANTS = Tenant.__table__
assert isinstance(_TENANTS, Table)
#: the guarded pointer move (executemany): only a tenant still at its base version moves
_MOVE = (
    _TENANTS.update()
    .where(_TENANTS.c.id == bindparam("tenant"), _TENANTS.c.config_version == bindparam("base"))
    .values(config_version=bindparam("new"))
)
_MOVE_FIRST = (
    _TENANTS.update()
    .where(_TENANTS.c.id == bindparam("tenant"), _TENANTS.c.config_version.is_(None))
    .values(config_version=bindparam("new"))
)


def move_pointers(ctx: Context, moves: Sequence[tuple[Tenant, int | None]]) -> None:
    """Point each tenant at its next version, guarded by the version the change was based on.

    Of concurrent changes based on the same version exactly one matches the
    guard (the others wait for its row lock, then match nothing), so the losers
    never reach the insert and get a clear PlanConflict, not a key violation --
    and never overwrite the winner. The tenant objects are updated in the
    session as loaded (no second UPDATE at flush).
    """
    for statement, group in (
        (_MOVE, [m for m in moves if m[1] is not None]),
        (_MOVE_FIRST, [m for m in moves if m[1] is None]),
    ):
        if not group:
            continue
        ctx.session.flush()  # pending ORM writes first, as a Session statement would
        params = [{"tenant": t.id, "base": base, "new": (base or 0) + 1} for t, base in group]
        moved = ctx.session.connection().execute(statement, params).rowcount
        if moved != len(group):
            lost = _lost(ctx, group) or [t for t, _ in group]
            names = ", ".join(repr(t.slug) for t in lost[:5]) + (
                f" and {len(lost) - 5} more" if len(lost) > 5 else ""
            )
            raise PlanConflict(
                f"the configuration of {names} changed while this change was being made",
                hint="look at the new version ('provisioner config history') and run the "
                "command again",
            )
    for tenant, base in moves:
        set_committed_value(tenant, "config_version", (base or 0) + 1)


def _lost(ctx: Context, group: Sequence[tuple[Tenant, int | None]]) -> list[Tenant]:
    """The tenants of ``group`` that another change moved: their pointer is elsewhere, or
    the version their move points at was already written (by that other change)."""
    ids = [t.id for t, _ in group]
    pointers = dict(
        ctx.session.execute(
            select(Tenant.id, Tenant.config_version).where(Tenant.id.in_(ids))
        ).all()
    )
    written = set(
        ctx.session.execute(
            select(ConfigVersion.tenant_id, ConfigVersion.version).where(
                tuple_(ConfigVersion.tenant_id, ConfigVersion.version).in_(
                    [(t.id, (base or 0) + 1) for t, base in group]
                )
            )
        ).all()
    )
    return [
        t
        for t, base in group
        if pointers.get(t.id) != (base or 0) + 1 or (t.id, (base or 0) + 1) in written
    ]


def initialise(
    ctx: Context,
    tenant: Tenant,
    *,
    author: str | None,
    doc: ConfigDocument | None = None,
    origin: str = "initial",
) -> int:
    version = commit_version(
        ctx, tenant, doc or default_document(), author=author, origin=origin, base_version=None
    )
    assert version == 1
    return version


def set_sections(
    ctx: Context,
    actor: Actor,
    tenant: Tenant,
    data: Mapping[str, Any],
    *,
    memo: IdentityMemo | None = None,
) -> int | None:
    """Replace the sections present in ``data`` (a whole document or some sections).

    Each section given is checked whole (:func:`normalized_sections`: the same schema,
    limits included, as a whole document's); the sections kept are the current
    document's, already valid; so, as for a transfer that replaces sections
    (``transfers.make_plan``), only the cross-references of the result remain to check.
    The result equals ``document_from_data(combine(...)).to_data()`` (a test compares
    them) without building model objects, which cost a 1.25 MB document about 0.2 s.

    ``memo``: kept by a caller that changes many tenants in turn (the documents they
    did not change are the same parse, :func:`documents.parsed`): the reference checks
    of the sections not given are then made once (:func:`references.check`).
    """
    require_admin(actor, "change the configuration")
    ctx.enter_tenant(tenant.id)  # the tenant's rows (row-level security)
    sections = normalized_sections(data, what="file")
    present = [name for name in SECTION_NAMES if name in sections]
    require_sections(present, what="file")
    head = current(ctx, tenant, shared=True)  # read, never changed: combine makes a new dict
    result = combine(head.data, sections, mode="replace", arriving=False)
    check_references(result, what="resulting configuration", memo=memo)
    version = commit_version(
        ctx, tenant, result, author=actor.login, origin="set", base_version=head.version
    )
    if version is not None:
        changes = config_diff.diff(head.data, result)
        audit.record(
            ctx,
            tenant_id=tenant.id,
            actor=actor.login,
            action="config:set",
            subject=f"version:{version}",
            from_version=head.version,
            sections=present,
            summary=config_diff.summarize(changes),
        )
    return version


def history(ctx: Context, tenant: Tenant) -> list[ConfigVersion]:
    with ctx.of_tenant(tenant.id):  # the tenant's rows (row-level security)
        return list(
            ctx.session.scalars(
                select(ConfigVersion)
                .where(ConfigVersion.tenant_id == tenant.id)
                .order_by(ConfigVersion.version)
            )
        )


def diff_versions(ctx: Context, tenant: Tenant, old: int, new: int) -> list[config_diff.Change]:
    return config_diff.diff(version_data(ctx, tenant.id, old), version_data(ctx, tenant.id, new))


def rollback(
    ctx: Context, actor: Actor, tenant: Tenant, to_version: int, *, reason: str | None = None
) -> int | None:
    """Make version ``to_version``'s document current again, as a new version."""
    require_admin(actor, "roll back the configuration")
    ctx.enter_tenant(tenant.id)  # the tenant's rows (row-level security)
    head = current(ctx, tenant)
    if to_version >= head.version:
        raise PlanConflict(
            f"version {to_version} is not older than the current version {head.version}",
            hint="'provisioner config history' lists the versions",
        )
    target = version_data(ctx, tenant.id, to_version)
    version = commit_version(
        ctx,
        tenant,
        target,
        author=actor.login,
        origin=f"rollback:{to_version}",
        base_version=head.version,
    )
    crashpoint("rollback.after_version")
    undone = (
        ctx.session.execute(
            update(Transfer)
            .where(
                Transfer.tenant_id == tenant.id,
                Transfer.status == "applied",
                Transfer.applied_version > to_version,
            )
            .values(status="rolled_back", rolled_back_at=ctx.clock.now())
            .returning(Transfer.id)
        )
        .scalars()
        .all()
    )
    crashpoint("rollback.after_transfers")
    audit.record(
        ctx,
        tenant_id=tenant.id,
        actor=actor.login,
        action="config:rolled_back",
        subject=f"version:{version or head.version}",
        to_version=to_version,
        from_version=head.version,
        reason=reason,
        transfers_rolled_back=list(undone),
    )
    return version
