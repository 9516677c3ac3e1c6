"""Who may do what in the CRM, and the tenant's configuration as the CRM reads it.

    perms = permissions(ctx, actor)            # frozenset of Permission strings
    require(ctx, actor, "export", "export customers")
    doc = config(ctx, actor.tenant_id)         # the current ConfigDocument (cached by version)

Built-in roles (REQUIREMENTS C): ``admin`` may do everything; ``general`` reads,
writes, deletes single records, exports, prints and bulk-updates;
``general_no_export`` and ``general_no_print`` lack one of those;
``read_only`` only reads. Custom roles come from the configuration's ``roles``
section with their listed permissions.

On PostgreSQL :func:`enter` also sets ``provisioner.tenant_id`` for the
transaction, which the row-level security policies of the CRM tables key on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from provisioner.config.document import ConfigDocument
from provisioner.db.models import ConfigVersion, Tenant
from provisioner.errors import NotFound, PermissionDenied
from provisioner.services import documents
from provisioner.services.actors import Actor
from provisioner.services.transaction import Context

ALL = frozenset(
    {
        "records.read",
        "records.write",
        "records.delete",
        "export",
        "print",
        "import",
        "bulk_update",
        "bulk_delete",
        "settings",
        "users",
    }
)
_GENERAL = frozenset(
    {"records.read", "records.write", "records.delete", "export", "print", "bulk_update"}
)
BUILTIN: dict[str, frozenset[str]] = {
    "admin": ALL,
    "general": _GENERAL,
    "general_no_export": _GENERAL - {"export"},
    "general_no_print": _GENERAL - {"print"},
    "read_only": frozenset({"records.read"}),
}

_DOCS: dict[str, ConfigDocument] = {}


_V, _T = ConfigVersion.__table__.c, Tenant.__table__.c
#: the current version's digest (built once: a lookup reads it on every call)
CURRENT = (
    select(_V.tenant_id, _V.version, _V.digest)
    .select_from(
        ConfigVersion.__table__.join(
            Tenant.__table__, (_T.id == _V.tenant_id) & (_T.config_version == _V.version)
        )
    )
    .where(_T.id == bindparam("tenant"))
)


def config(ctx: Context, tenant_id: int) -> ConfigDocument:
    """The tenant's current configuration (cached by content digest: versions are immutable)."""
    session = ctx.session
    if session.autoflush:
        session.flush()  # as session.execute would: a version set in this transaction
    with ctx.of_tenant(tenant_id):  # the tenant's rows (free when scoped to it already)
        return document(ctx, session.connection().execute(CURRENT, {"tenant": tenant_id}).first())


def document(ctx: Context, row: Any) -> ConfigDocument:
    """The configuration of a :data:`CURRENT` row (None: the tenant has none)."""
    if row is None:
        raise NotFound("the tenant has no configuration")
    doc = _DOCS.get(row.digest)
    if doc is None:
        # the tenant's row: a pipelined read may have ended the transaction (and its scope)
        with ctx.of_tenant(row.tenant_id):
            version = ctx.session.get(ConfigVersion, (row.tenant_id, row.version))
            assert version is not None
            document = documents.version_body(ctx.session, version)
        doc = ConfigDocument.model_validate_json(document, strict=False)
        if len(_DOCS) > 256:
            _DOCS.clear()
        _DOCS[row.digest] = doc
    return doc


def permissions(ctx: Context, actor: Actor, doc: ConfigDocument | None = None) -> frozenset[str]:
    """The actor's permissions (``doc``: the tenant's configuration, if already read)."""
    if actor.role in BUILTIN:
        return BUILTIN[actor.role]
    for role in (doc or config(ctx, actor.tenant_id)).roles:
        if role.code == actor.role:
            return frozenset(role.permissions)
    return frozenset()


def require(
    ctx: Context, actor: Actor, permission: str, action: str, doc: ConfigDocument | None = None
) -> None:
    if permission not in permissions(ctx, actor, doc):
        raise PermissionDenied(
            f"{actor.login!r} ({actor.role}) may not {action} in {actor.tenant_slug!r}",
            hint=f"this needs the {permission!r} permission; ask a tenant admin",
        )


def enter(ctx: Context, actor: Actor) -> None:
    """Scope the transaction to the actor's tenant (PostgreSQL row-level security)."""
    ctx.enter_tenant(actor.tenant_id)
