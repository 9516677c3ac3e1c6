"""Transfers: incoming configurations, from bundle to applied version.

    pending --approve--> applied --config rollback--> rolled_back
            --reject---> rejected

Receiving (``send`` in one deployment, ``receive FILE`` across deployments)
verifies, in this order: the target may receive; the signature (only keys the
target accepts); the payload strictly; expiry; the audience (a copy key of
*this* tenant, held by the sender) or a trusted publisher; replay; and that
the resulting document would be valid. Only then is a pending transfer with
its plan stored, and the copy key consumed, in the same transaction.

When the target already took a version from the same source (its lineage, see
:mod:`provisioner.services.lineage`), the plan is three-way (base: what the
target last took from that source; ours: the target now; theirs: incoming) and
``upgrade`` is the default approval mode: the target's own changes are kept,
conflicts are listed and must be resolved (``keep`` / ``take`` / ``prefer``)
before the approval goes through. Every applied transfer moves the base of its
sections for its source.

Approving re-checks that the target is still at the version the plan was made
against and what the change does to the target's records (the data impact,
counted again at approval), then writes the new version, any remaps of removed
picklist values held by records, the transfer state and the audit event in one
transaction. A removed value still in use blocks the approval unless the
approver remaps it (``rank.gold=silver``) or forces it through (``force``:
the records keep the value the configuration no longer offers).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from provisioner.bundles import payload as bundle_payload
from provisioner.bundles.envelope import parse_envelope
from provisioner.bundles.payload import Audience, Source, VerifiedBundle, build_bundle, read_bundle
from provisioner.canonical import canonical_bytes
from provisioner.clock import as_utc
from provisioner.config import diff as config_diff
from provisioner.config.document import SECTION_NAMES
from provisioner.config.memo import IdentityMemo
from provisioner.config.merge import Mode, combine, parse_only
from provisioner.config.merge3 import Side, Upgrade, merge3
from provisioner.config.validate import (
    check_references,
    normalized_document,
)
from provisioner.crashpoints import crashpoint
from provisioner.db.models import (
    ConfigVersion,
    CopyKeyRow,
    Tenant,
    Transfer,
    TrustedPublisher,
)
from provisioner.errors import (
    BundleRejected,
    DataInUse,
    KeyRejected,
    NotFound,
    PlanConflict,
    UnresolvedConflicts,
    ValidationFailed,
)
from provisioner.gcpause import paused_gc
from provisioner.security import copykey
from provisioner.services import audit, configs, copykeys, documents, lineage, signing
from provisioner.services.actors import Actor, get_tenant, require_admin, resolve_for_tenant_id
from provisioner.services.crm import impact as data_impact
from provisioner.services.eligibility import require_can_receive, require_can_send
from provisioner.services.provisioning import quotas
from provisioner.services.transaction import Context

UNBOUND_LIFETIME = timedelta(days=90)
#: how an approval combines the incoming sections with the target's (see the module doc)
ApproveMode = Literal["replace", "merge", "upgrade"]


# --------------------------------------------------------------------------- export


@paused_gc()  # a large document is thousands of cycle-free containers
def export(
    ctx: Context,
    actor: Actor,
    *,
    key_text: str | None = None,
    only: Iterable[str] | None = None,
    lifetime: timedelta = UNBOUND_LIFETIME,
) -> bytes:
    """The source tenant's configuration as a signed bundle (file bytes).

    With a copy key the bundle is bound to it: its audience names the key and
    carries a proof of holding it, and it expires with the key.
    """
    require_admin(actor, "export the configuration")
    ctx.enter_tenant(actor.tenant_id)  # the actor's tenant's rows (row-level security)
    source = get_tenant(ctx, actor.tenant_slug)
    require_can_send(source)
    sections = parse_only(only)
    version, digest, document = configs.current_text(ctx, source)
    config: dict[str, Any] | bytes = document
    if sections is not None:
        data = orjson.loads(document)
        config = {
            "schema_version": data["schema_version"],
            **{name: data[name] for name in sections},
        }
    now = ctx.clock.now()
    bundle_id = bundle_payload.new_bundle_id()
    audience = None
    expires_at = now + lifetime
    key = copykey.parse(key_text) if key_text is not None else None  # before any lookup
    key_id, private_key = signing.signer_with_id(ctx, source.id)
    if key is not None:
        ctx.present(copy_key=key.selector)  # the target's key, reached by its selector
        row = ctx.session.execute(
            select(CopyKeyRow.expires_at, Tenant.slug)
            .outerjoin(Tenant, Tenant.id == CopyKeyRow.tenant_id)
            .where(CopyKeyRow.selector == key.selector)
        ).first()
        target_slug = None
        if row is not None:  # the target lives in this deployment
            expires_at = min(expires_at, as_utc(row.expires_at))
            target_slug = row.slug
        else:
            expires_at = min(expires_at, now + copykeys.LIFETIME)
        audience = Audience(
            copy_key=key.selector,
            tenant=target_slug,
            binding=key.binding(bundle_id, source_tenant=source.slug, publisher_key_id=key_id),
        )
    raw = build_bundle(
        config=config,
        source=Source(
            tenant=source.slug, name=source.name, config_version=version, config_digest=digest
        ),
        signer=private_key,
        created_at=now,
        expires_at=expires_at,
        audience=audience,
        bundle_id=bundle_id,
    )
    audit.record(
        ctx,
        tenant_id=source.id,
        actor=actor.login,
        action="bundle:exported",
        subject=bundle_id,
        config_version=version,
        sections=list(sections or []) or "all",
        copy_key=audience.copy_key if audience else None,
    )
    return raw


# --------------------------------------------------------------------------- receive


def data_impact_of(
    ctx: Context, tenant_id: int, base: Mapping[str, Any], result: Mapping[str, Any] | bytes
) -> dict[str, Any]:
    """What going from ``base`` to ``result`` does to the tenant's records, counted now."""
    if not data_impact.has_records(ctx, tenant_id):
        return data_impact.NO_IMPACT
    if isinstance(result, bytes):
        result = orjson.loads(result)
        assert isinstance(result, dict)
    return data_impact.impact(ctx, tenant_id, base, result)


def make_plan(
    base: configs.Current, incoming: dict[str, Any], *, mode: Mode, only: Sequence[str] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(resulting document data, plan) for taking ``incoming`` onto ``base``.

    The plan's ``impact`` (records affected) is filled in by the caller, which
    holds the session: see :func:`data_impact_of`.
    """
    result = combine(base.data, incoming, mode=mode, only=only)
    what = "configuration after this transfer"
    if mode == "merge":
        # merging can break whole-section limits (e.g. too many picklists): re-check it all
        result = normalized_document(result, what=what)
    else:
        # replace puts whole sections side by side, each already normalised and valid
        # (the stored document, and the bundle's sections): only references can break
        check_references(result, what=what)
    sections = [
        name
        for name in (only or incoming)
        if name in result and name in incoming and name != "schema_version"
    ]
    plan_sections = [p for p in config_diff.PLAN_SECTIONS if p.split(".")[0] in sections]
    changes = config_diff.diff(base.data, result, plan_sections)
    plan = {
        "base_version": base.version,
        "base_digest": base.digest,
        "mode": mode,
        "sections": sections,
        "summary": config_diff.summarize(changes),
        "changes": [c.to_dict() for c in changes],
    }
    return result, plan


def upgrade_plan(
    head: configs.Current,
    incoming: dict[str, Any],
    ancestor: lineage.Base,
    *,
    only: Sequence[str] | None = None,
    keep: Iterable[str] = (),
    take: Iterable[str] = (),
    prefer: Side | None = None,
    memo: IdentityMemo | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Upgrade]:
    """(resulting document, plan, merge) for upgrading ``head`` three-way to ``incoming``.

    The plan is :func:`make_plan`'s with ``mode: upgrade`` and an ``upgrade`` member:
    the source and its base, the taken, kept and conflicting addresses. ``memo``: see
    :func:`merge3` (a rollout plans one template change for many tenants; the result
    may then share sections with other results and must not be changed).
    """
    sections = [
        name
        for name in (only or incoming)
        if name in incoming and name != "schema_version" and name in head.data
    ]
    up = merge3(
        ancestor.sections,
        head.data,
        incoming,
        sections=sections,
        keep=keep,
        take=take,
        prefer=prefer,
        memo=memo,
    )
    result = up.result
    if up.mixed:  # items assembled from both sides: check the structure again (limits...)
        result = normalized_document(result, what="configuration after this upgrade")
    plan_sections = [p for p in config_diff.PLAN_SECTIONS if p.split(".")[0] in sections]
    changes = config_diff.diff(head.data, result, plan_sections)
    plan = {
        "base_version": head.version,
        "base_digest": head.digest,
        "mode": "upgrade",
        "sections": sections,
        "summary": config_diff.summarize(changes),
        "changes": [c.to_dict() for c in changes],
        "upgrade": {**ancestor.describe(), **up.to_dict()},
    }
    return result, plan, up


def _receipt_plan(
    ctx: Context, target: Tenant, head: configs.Current, incoming: dict[str, Any], source: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The plan stored with a transfer: three-way when the target has a base from ``source``."""
    ancestor = lineage.base(ctx, target.id, source)
    if ancestor is None:
        return make_plan(head, incoming, mode="replace", only=None)
    try:
        result, plan, _ = upgrade_plan(head, incoming, ancestor)
    except ValidationFailed as exc:  # e.g. ours + theirs over a section's limit: still receive
        result, plan = make_plan(head, incoming, mode="replace", only=None)
        plan["upgrade_refused"] = exc.diagnostics()
    return result, plan


def _verify(
    ctx: Context,
    target: Tenant,
    raw: bytes,
    extra_keys: Iterable[Ed25519PublicKey],
    pins: Sequence[TrustedPublisher],
) -> tuple[VerifiedBundle, signing.KeyOwner | None]:
    """The verified bundle and the tenant of this deployment that signed it, if any.

    ``pins``: the target's pinned publishers (:func:`signing.pinned`).
    """
    owners: dict[str, signing.KeyOwner | None] = {}  # filled by the resolver: key and owner
    bundle = read_bundle(
        raw, signing.resolver_for(ctx, target.id, extra_keys, pins=pins, owners=owners)
    )
    if ctx.clock.now() >= bundle.expires_at:
        raise BundleRejected(
            f"bundle expired at {bundle.payload.expires_at}",
            hint="ask the source tenant's admin to send it again",
        )
    owner: signing.KeyOwner | None
    if bundle.key_id in owners:
        owner = owners[bundle.key_id]
    else:  # a pinned or explicit key: its owner, if a tenant here (key and tenant joined)
        found = signing.tenant_key(ctx, bundle.key_id)
        owner = found[1] if found else None
    claimed = bundle.payload.source.tenant
    if owner is not None and owner.slug != claimed:
        raise BundleRejected(
            f"bundle claims to come from {claimed!r} but is signed by the key of {owner.slug!r}",
            hint="a tenant can only send its own configuration",
        )
    if owner is not None and owner.id == target.id:
        raise BundleRejected("a tenant cannot send its configuration to itself")
    return bundle, owner


@paused_gc()
def accept(
    ctx: Context,
    target: Tenant,
    raw: bytes,
    *,
    received_by: str,
    attempted_by: str,
    extra_keys: Iterable[Ed25519PublicKey] = (),
    pinned: Sequence[TrustedPublisher] | None = None,
) -> Transfer:
    """Verify a bundle for ``target`` and store it as a pending transfer.

    ``pinned``: the target's pinned publishers, when the caller read them with it.
    """
    require_can_receive(target)
    if pinned is None:  # read once: the resolver and the checks below
        pinned = signing.pinned(ctx, target.id)
    bundle, owner = _verify(ctx, target, raw, extra_keys, pinned)
    payload = bundle.payload
    audience = payload.audience
    pins = {p.key_id: p for p in pinned}
    if audience is None and bundle.key_id not in pins:
        raise KeyRejected(
            f"bundle is not addressed to {target.slug!r}: it carries no copy key",
            hint="export it with --key KEY (a key generated by the target's admin), "
            "or pin the publisher first",
        )
    duplicate_of = select(Transfer.id).where(
        Transfer.tenant_id == target.id, Transfer.bundle_id == payload.bundle_id
    )
    lock = copykeys.serializing(ctx, attempted_by) if audience is not None else None
    if lock is None:
        duplicate = ctx.session.scalar(duplicate_of)
    else:  # the copy key check's lock (copykeys.check) taken in the same round trip
        duplicate = ctx.session.execute(select(duplicate_of.scalar_subquery(), lock)).one()[0]
    if duplicate is not None:
        raise BundleRejected(
            f"bundle {payload.bundle_id} was already received (transfer {duplicate}); "
            "a bundle is delivered once"
        )
    base = configs.current(ctx, target)
    source = lineage.source_of_bundle(
        payload.source.tenant, bundle.key_id, verified_source=owner is not None
    )
    result, plan = _receipt_plan(ctx, target, base, bundle.config, source)
    plan["impact"] = data_impact_of(ctx, target.id, base.data, result)
    if (
        plan["mode"] == "replace"
        and len(plan["sections"]) == len(SECTION_NAMES)
        and result["workflows"] is bundle.config["workflows"]
    ):
        # a whole document (no workflow paused on arrival): approving it as is copies
        # these very bytes (see approve)
        plan["incoming_digest"] = bundle.config_digest
    plan["signer"] = {
        "key_id": bundle.key_id,
        "verified_source": owner is not None,
        "pinned_as": pins[bundle.key_id].label if bundle.key_id in pins else None,
    }
    key_row = None
    if audience is not None:  # last check before any write: a refusal here is recorded
        if audience.tenant is not None and audience.tenant != target.slug:
            row = ctx.session.scalar(
                select(CopyKeyRow).where(CopyKeyRow.selector == audience.copy_key)
            )
            raise copykeys.refuse(
                ctx,
                attempted_by,
                row,
                f"bundle was made for tenant {audience.tenant!r}, not {target.slug!r}",
            )
        key_row = copykeys.check(
            ctx,
            selector=audience.copy_key,
            target=target,
            attempted_by=attempted_by,
            proof=copykeys.Proof(
                binding=audience.binding,
                bundle_id=payload.bundle_id,
                publisher_key_id=bundle.key_id,
                source_tenant=payload.source.tenant,
            ),
            serialized=lock is not None,
        )
    quotas.require_room(ctx, target, len(raw) + len(bundle.config_json), what="this bundle")
    crashpoint("receive.after_key_check")
    # stored once per distinct content; its parsed form (validated, never changed) kept
    # for the approval. Content this process has held is probably stored: looked up
    # first (the megabytes not sent again); other content: one INSERT ... ON CONFLICT
    # DO NOTHING, no look-up first
    documents.store(
        ctx,
        bundle.config_json,
        bundle.config_digest,
        parsed_as=bundle.config,
        look=documents.held(bundle.config_digest),
    )
    documents.store(ctx, file_document(bundle)[1], look=False)  # the file without it
    transfer = _insert_once(
        ctx,
        transfer_row(
            bundle,
            raw,
            tenant_id=target.id,
            base_version=base.version,
            plan=plan,
            received_at=ctx.clock.now(),
            received_by=received_by,
            copy_key_id=key_row.id if key_row else None,
        ),
        consume=key_row,
    )
    crashpoint("receive.after_insert")
    audit.record_many(
        ctx,
        [
            received_event(
                ctx,
                target.id,
                transfer.id,
                bundle,
                received_by=received_by,
                copy_key=audience.copy_key if audience else None,
                summary=plan["summary"],
            )
        ],
    )
    crashpoint("receive.after_audit")
    return transfer


def received_event(
    ctx: Context,
    tenant_id: int,
    transfer_id: int,
    bundle: VerifiedBundle,
    *,
    received_by: str,
    copy_key: str | None,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """The ``transfer:received`` audit event (:func:`accept`, a rollout batch)."""
    payload = bundle.payload
    return audit.event(
        ctx,
        tenant_id=tenant_id,
        actor=received_by,
        action="transfer:received",
        subject=f"transfer:{transfer_id}",
        bundle_digest=bundle.digest,
        bundle_id=payload.bundle_id,
        signer_key_id=bundle.key_id,
        source_tenant=payload.source.tenant,
        source_version=payload.source.config_version,
        copy_key=copy_key,
        summary=summary,
    )


def approved_event(
    ctx: Context,
    tenant_id: int,
    transfer_id: int,
    *,
    actor: str,
    bundle_digest: str,
    signer_key_id: str,
    source_tenant: str,
    mode: str,
    plan: Mapping[str, Any],
    from_version: int,
    to_version: int | None,
    impact: Mapping[str, Any],
    remapped: dict[str, int] | None = None,
    forced: list[str] | None = None,
) -> dict[str, Any]:
    """The ``transfer:approved`` audit event (:func:`approve`, a rollout batch)."""
    return audit.event(
        ctx,
        tenant_id=tenant_id,
        actor=actor,
        action="transfer:approved",
        subject=f"transfer:{transfer_id}",
        bundle_digest=bundle_digest,
        signer_key_id=signer_key_id,
        source_tenant=source_tenant,
        mode=mode,
        sections=plan["sections"],
        from_version=from_version,
        to_version=to_version,
        summary=plan["summary"],
        impact=[data_impact.describe(i) for i in impact["items"]],
        remapped=remapped,
        forced=forced or None,
    )


def transfer_row(
    bundle: VerifiedBundle,
    raw: bytes,
    *,
    tenant_id: int,
    base_version: int,
    plan: dict[str, Any],
    received_at: datetime,
    received_by: str,
    copy_key_id: int | None = None,
    decided_by: str | None = None,
    applied_version: int | None = None,
) -> dict[str, Any]:
    """Every column of a received transfer: ``pending``, or ``applied`` at once (``decided_by``:
    a rollout's auto policy). The bundle file is stored without repeating its configuration
    (:func:`bundles.payload.split_file`), once per distinct content as the document
    :func:`file_document` (every target of a rollout receives the same file) named by the
    frame; it and the configuration itself (named by ``incoming_digest``) are stored by the
    caller (``documents.store``)."""
    payload = bundle.payload
    return dict(
        tenant_id=tenant_id,
        status="pending" if decided_by is None else "applied",
        bundle_id=payload.bundle_id,
        payload_digest=bundle.digest,
        signer_key_id=bundle.key_id,
        source_tenant=payload.source.tenant,
        source_name=payload.source.name,
        source_version=payload.source.config_version,
        source_digest=payload.source.config_digest,
        envelope=b"",  # the file is the document named by the frame (file_document)
        payload_frame={"file": file_document(bundle)[0]},
        envelope_bytes=len(raw),
        incoming_digest=bundle.config_digest,  # stored by the caller (documents.store)
        base_version=base_version,
        stored_plan=plan,
        received_at=received_at,
        received_by=received_by,
        copy_key_id=copy_key_id,
        decided_at=None if decided_by is None else received_at,
        decided_by=decided_by,
        reason=None,
        applied_version=applied_version,
        rolled_back_at=None,
    )


def file_document(bundle: VerifiedBundle) -> tuple[str, bytes]:
    """(digest, body) of the document that keeps a bundle's file without its configuration:
    the file with the payload cut out and the frame that puts it back
    (:func:`bundles.payload.split_file`), as RFC 8785 JSON (the file base64-encoded)."""
    stored, frame = bundle_payload.split_file(bundle)
    body = canonical_bytes({"file": base64.b64encode(stored).decode("ascii"), "frame": frame})
    return documents.digest_of(body), body


#: PostgreSQL: ``n`` new transfer ids, ascending, in one statement (one array)
_RESERVE_IDS = text(
    "SELECT array_agg(i ORDER BY i) FROM (SELECT "
    "nextval(pg_get_serial_sequence('transfers', 'id')) AS i "
    "FROM generate_series(1, :n)) AS reserved"
)


def insert_many(ctx: Context, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert transfers (rows made by :func:`transfer_row`); their ids, in row order.

    PostgreSQL: the ids are drawn from the table's sequence first (one statement), then
    the rows go in as one executemany of one INSERT -- its text is the same whatever the
    number of rows, so the driver and the server parse and plan it once per connection
    (a multi-row ``INSERT ... RETURNING`` has a text per batch size, tens of kilobytes
    parsed again for every batch). Elsewhere one multi-row ``INSERT ... RETURNING``.

    For callers that already hold the targets' rows locked and checked that none
    has the bundle (a rollout batch). The unique ``(tenant_id, bundle_id)`` still
    refuses a second delivery (an IntegrityError rolls the caller's transaction
    back); :func:`accept` inserts one with :func:`_insert_once` instead, which
    turns a concurrent receipt into BundleRejected and consumes a copy key.
    """
    if not rows:
        return []
    if ctx.session.get_bind().dialect.name == "postgresql":
        ids: list[int] = list(ctx.session.scalar(_RESERVE_IDS, {"n": len(rows)}))
        ctx.session.execute(
            insert(Transfer), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)]
        )
        return ids
    return list(
        ctx.session.scalars(
            insert(Transfer).returning(Transfer.id, sort_by_parameter_order=True), list(rows)
        )
    )


def _insert_once(
    ctx: Context, values: dict[str, Any], *, consume: CopyKeyRow | None = None
) -> Transfer:
    """Insert the transfer unless the tenant already has its bundle (concurrent receipt).

    ``INSERT ... ON CONFLICT (tenant_id, bundle_id) DO NOTHING RETURNING id`` (Core,
    not a flush in a savepoint: two round trips and the unit of work fewer): the
    loser of a race waits for the winner's commit and inserts nothing. The row is
    then attached to the session as loaded, every column being known.

    ``consume``: the copy key the bundle redeems, marked used by the new transfer
    (:func:`copykeys.consuming`) -- on PostgreSQL in the same statement, the
    guarded UPDATE a data-modifying CTE after the INSERT.
    """
    postgres = ctx.session.get_bind().dialect.name == "postgresql"
    dialect = postgresql if postgres else sqlite
    statement = (
        dialect.insert(Transfer)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "bundle_id"])
        .returning(Transfer.id)
    )
    consumed: int | None = None
    if consume is not None and postgres:
        inserted = statement.cte("inserted")
        new_id = select(inserted.c.id).scalar_subquery()
        used = (
            copykeys.consuming(ctx, consume, new_id)
            .where(select(inserted.c.id).exists())
            .returning(CopyKeyRow.id)
            .cte("used")
        )
        transfer_id, consumed = ctx.session.execute(
            select(new_id, select(func.count()).select_from(used).scalar_subquery())
        ).one()
    else:
        transfer_id = ctx.session.scalar(statement)
    if transfer_id is None:
        raise BundleRejected(
            f"bundle {values['bundle_id']} was already received; a bundle is delivered once"
        )
    if consume is not None:
        if consumed is None:
            copykeys.consume(ctx, consume, transfer_id)
        elif consumed != 1:
            raise copykeys.already_used()
    transfer = Transfer(id=transfer_id, **values)
    make_transient_to_detached(transfer)
    ctx.session.add(transfer)
    return transfer


def send(
    ctx: Context, actor: Actor, key_text: str, *, only: Iterable[str] | None = None
) -> Transfer:
    """Source admin delivers the configuration to the key's tenant (same deployment)."""
    require_admin(actor, "send the configuration")
    key = copykey.parse(key_text)  # checksum first: no lookup for a mistyped key
    row = copykeys.check(
        ctx,
        selector=key.selector,
        proof=copykeys.Proof(secret=key),
        attempted_by=f"tenant:{actor.tenant_slug}",
    )
    target = ctx.session.get(Tenant, row.tenant_id)
    if target is None or target.status != "active":
        raise NotFound("the copy key's tenant no longer exists")
    raw = export(ctx, actor, key_text=key_text, only=only)
    source = get_tenant(ctx, actor.tenant_slug)
    with ctx.tenant_scope(target.id):  # delivered into the target, as the key allows
        transfer = accept(
            ctx,
            target,
            raw,
            received_by=f"{actor.login}@{source.slug}",
            attempted_by=f"tenant:{source.slug}",
        )
    audit.record(
        ctx,
        tenant_id=source.id,
        actor=actor.login,
        action="transfer:sent",
        subject=f"transfer:{transfer.id}",
        target=target.slug,
        bundle_digest=transfer.payload_digest,
    )
    return transfer


def receive(
    ctx: Context, actor: Actor, raw: bytes, *, extra_keys: Iterable[Ed25519PublicKey] = ()
) -> Transfer:
    """Target admin takes a bundle file (made with ``bundle export --key``)."""
    require_admin(actor, "receive configurations")
    ctx.enter_tenant(actor.tenant_id)  # the actor's tenant's rows (row-level security)
    # the tenant (actors.get_tenant) and its pinned publishers (signing.pinned) in one query
    rows = ctx.session.execute(
        select(Tenant, TrustedPublisher)
        .outerjoin(TrustedPublisher, TrustedPublisher.tenant_id == Tenant.id)
        .where(Tenant.slug == actor.tenant_slug)
        .order_by(TrustedPublisher.id)
    ).all()
    pinned: list[TrustedPublisher] | None = None
    if rows and rows[0][0].status != "cancelled":
        target, pinned = rows[0][0], [pin for _, pin in rows if pin is not None]
    else:  # NotFound, worded as everywhere else
        target = get_tenant(ctx, actor.tenant_slug)
    return accept(
        ctx,
        target,
        raw,
        received_by=actor.login,
        attempted_by=f"tenant:{target.slug}",
        extra_keys=extra_keys,
        pinned=pinned,
    )


# --------------------------------------------------------------------------- inbox


def inbox(ctx: Context, actor: Actor, *, status: str | None = None) -> list[Transfer]:
    require_admin(actor, "list incoming configurations")
    ctx.enter_tenant(actor.tenant_id)  # the actor's tenant's rows (row-level security)
    query = select(Transfer).where(Transfer.tenant_id == actor.tenant_id)
    if status:
        query = query.where(Transfer.status == status)
    return list(ctx.session.scalars(query.order_by(Transfer.id.desc())))


def get(ctx: Context, login: str, transfer_id: int) -> tuple[Transfer, Actor]:
    """The transfer and the acting user in its tenant. Outsiders get NotFound."""
    with ctx.operator("read"):  # its tenant, by id; the membership check below decides
        tenant_id = ctx.session.scalar(select(Transfer.tenant_id).where(Transfer.id == transfer_id))
    if tenant_id is None:
        raise NotFound(f"no transfer {transfer_id} visible to user {login!r}")
    actor = resolve_for_tenant_id(ctx, login, tenant_id, what=f"transfer {transfer_id}")
    require_admin(actor, "read incoming configurations")  # the copy feature: admins only
    transfer = ctx.session.get(Transfer, transfer_id)  # in the tenant's scope now
    assert transfer is not None
    return transfer, actor


def incoming_bytes(session: Session, transfer: Transfer) -> bytes:
    """The configuration sections of the bundle as stored at receipt (RFC 8785 bytes)."""
    return documents.body(session, transfer.incoming_digest)


def bundle_file(session: Session, transfer: Transfer) -> bytes:
    """The bundle file exactly as it was received (see ``Transfer.payload_frame``)."""
    stored, frame = transfer.envelope, transfer.payload_frame
    if frame is not None and "file" in frame:  # stored once, as a document (file_document)
        shared = orjson.loads(documents.body(session, frame["file"]))
        stored, frame = base64.b64decode(shared["file"]), shared["frame"]
    return bundle_payload.join_file(stored, frame, incoming_bytes(session, transfer))


def incoming_config(
    session: Session, transfer: Transfer, *, shared: bool = False
) -> dict[str, Any]:
    """The configuration sections of the bundle, as validated and normalised at receipt.

    ``shared``: the parsed sections of the document cache, read-only (no copy)."""
    if shared:
        found: dict[str, Any] = documents.parsed(session, transfer.incoming_digest)
        return found
    sections: dict[str, Any] = orjson.loads(incoming_bytes(session, transfer))
    return sections


def preview(
    ctx: Context,
    transfer: Transfer,
    *,
    mode: ApproveMode | None = None,
    only: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The plan against the target's *current* configuration, for a given mode.

    ``mode`` None: ``upgrade`` when the target has a base from the transfer's
    source, else ``replace``.
    """
    target = ctx.session.get(Tenant, transfer.tenant_id)
    assert target is not None
    head = configs.current(ctx, target)
    ancestor = lineage.base(ctx, target.id, lineage.source_of(transfer))
    mode = mode or ("upgrade" if ancestor is not None else "replace")
    stored = transfer.plan.get("mode", "replace")
    if (
        mode == stored
        and only is None
        and target.config_version == transfer.base_version
        and mode == "replace"
    ):
        plan = dict(transfer.plan)
        if data_impact.has_records(ctx, target.id):  # the records may have changed since receipt
            result = combine(
                head.data, incoming_config(ctx.session, transfer, shared=True), mode="replace"
            )
            plan["impact"] = data_impact.impact(ctx, target.id, head.data, result)
        else:
            plan["impact"] = data_impact.NO_IMPACT
        return plan
    if mode == "upgrade":
        if ancestor is None:
            raise _no_base(transfer, target)
        result, plan, _ = upgrade_plan(
            head,
            incoming_config(ctx.session, transfer, shared=True),
            ancestor,
            only=parse_only(only),
        )
    else:
        result, plan = make_plan(
            head,
            incoming_config(ctx.session, transfer, shared=True),
            mode=mode,
            only=parse_only(only),
        )
    plan["impact"] = data_impact_of(ctx, target.id, head.data, result)
    return plan


def _no_base(transfer: Transfer, target: Tenant) -> PlanConflict:
    return PlanConflict(
        f"transfer {transfer.id} has no base to upgrade from: {target.slug!r} never applied "
        f"a configuration from {lineage.source_of(transfer)}",
        hint="approve it with --mode replace or --mode merge",
    )


@dataclass(frozen=True)
class Decision:
    transfer: Transfer
    outcome: Literal["applied", "unchanged", "replanned", "rejected"]
    version: int | None = None
    message: str = ""
    #: records rewritten per remap (``{"rank.gold": 12}``)
    remapped: dict[str, int] | None = None
    #: blocking impact items approved anyway with ``force``
    forced: list[str] | None = None


def _lock(ctx: Context, transfer_id: int) -> Transfer:
    transfer = ctx.session.scalar(
        select(Transfer)
        .where(Transfer.id == transfer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if transfer is None:
        raise NotFound(f"no transfer {transfer_id}")
    return transfer


def _require_pending(transfer: Transfer) -> None:
    if transfer.status != "pending":
        raise PlanConflict(f"transfer {transfer.id} is already {transfer.status.replace('_', ' ')}")


def _claim(ctx: Context, transfer: Transfer, status: str, actor: Actor, **values: Any) -> None:
    """Move pending -> status with a guarded update: exactly one decision ever wins."""
    claimed = ctx.session.execute(
        update(Transfer)
        .where(Transfer.id == transfer.id, Transfer.status == "pending")
        .values(status=status, decided_at=ctx.clock.now(), decided_by=actor.login, **values)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise PlanConflict(f"transfer {transfer.id} was decided by someone else meanwhile")
    decided = {"status": status, "decided_at": ctx.clock.now(), "decided_by": actor.login, **values}
    for name, value in decided.items():  # what the UPDATE wrote, without reloading the row
        set_committed_value(transfer, name, value)


def _check_impact(
    report: Mapping[str, Any], remaps: Mapping[str, str], force: bool, transfer_id: int
) -> list[str]:
    """Refuse an approval that strands data; returns what ``force`` let through."""
    removed = {
        f"{i['picklist']}.{i['value']}": i
        for i in report["items"]
        if i["kind"] == "picklist_value_removed"
    }
    stray = sorted(set(remaps) - set(removed))
    if stray:
        in_use = ", ".join(f"{k} ({v['count']} records)" for k, v in sorted(removed.items()))
        raise DataInUse(
            f"remap {', '.join(stray)} matches no removed picklist value held by records",
            hint=f"removed values in use: {in_use}"
            if in_use
            else "this transfer removes no picklist value that records hold; drop --remap",
        )
    blocking = data_impact.unresolved(report, remaps=remaps)
    if blocking and not force:
        raise DataInUse(
            f"approving transfer {transfer_id} would strand data the new configuration no "
            "longer describes",
            problems=blocking,
            hint="remap each removed value (--remap PICKLIST.VALUE=NEWVALUE), or --force to "
            "keep the records as they are; 'provisioner inbox show' lists the impact",
        )
    return blocking


def _mine(ctx: Context, actor: Actor, transfer_id: int) -> Transfer:
    """The transfer, when it belongs to the actor's tenant (others get NotFound)."""
    ctx.enter_tenant(actor.tenant_id)  # the actor's tenant's rows (row-level security)
    transfer = ctx.session.get(Transfer, transfer_id)
    if transfer is None or transfer.tenant_id != actor.tenant_id:
        raise NotFound(f"no transfer {transfer_id} in tenant {actor.tenant_slug!r}")
    return transfer


@paused_gc()
def approve(
    ctx: Context,
    actor: Actor,
    transfer_id: int,
    *,
    mode: ApproveMode | None = None,
    only: Iterable[str] | None = None,
    remaps: Mapping[str, str] | None = None,
    force: bool = False,
    keep: Iterable[str] = (),
    take: Iterable[str] = (),
    prefer: Side | None = None,
) -> Decision:
    """Apply a pending transfer of the actor's tenant in the caller's transaction.

    ``mode`` None: ``upgrade`` when the target has a base from the transfer's
    source, else ``replace``. An upgrade with unresolved conflicts is refused
    (:class:`UnresolvedConflicts` lists them); ``keep`` / ``take`` resolve the
    conflicts at or under the given addresses, ``prefer`` the rest.
    ``remaps`` (``{"rank.gold": "silver"}``) rewrites records holding a removed
    picklist value, in the same transaction; ``force`` applies even though
    records hold values the new configuration removes.
    """
    remaps = dict(remaps or {})
    keep, take = list(keep), list(take)
    _mine(ctx, actor, transfer_id)
    require_admin(actor, "approve incoming configurations")
    transfer = _lock(ctx, transfer_id)
    _require_pending(transfer)
    crashpoint("approve.after_lock")
    target = ctx.session.get(
        Tenant, transfer.tenant_id, populate_existing=True, with_for_update=True
    )
    assert target is not None
    require_can_receive(target)
    sections = parse_only(only)
    head = configs.current(ctx, target)
    ancestor = lineage.base(ctx, target.id, lineage.source_of(transfer))
    if head.version != transfer.base_version:
        replanned, plan = _receipt_plan(
            ctx,
            target,
            head,
            incoming_config(ctx.session, transfer, shared=True),
            lineage.source_of(transfer),
        )
        plan["impact"] = data_impact_of(ctx, target.id, head.data, replanned)
        plan["signer"] = transfer.plan.get("signer")
        transfer.plan = plan
        old = transfer.base_version
        transfer.base_version = head.version
        audit.record(
            ctx,
            tenant_id=target.id,
            actor=actor.login,
            action="transfer:replanned",
            subject=f"transfer:{transfer.id}",
            from_version=old,
            to_version=head.version,
        )
        return Decision(
            transfer,
            "replanned",
            message=(
                f"the configuration of {target.slug!r} changed since the plan was made "
                f"(version {old} -> {head.version}); the plan was made again: review it with "
                f"'provisioner inbox show {transfer.id}' and approve again"
            ),
        )
    mode = mode or ("upgrade" if ancestor is not None else "replace")
    if (keep or take or prefer) and mode != "upgrade":
        raise ValidationFailed(
            "--keep, --take and --prefer resolve the conflicts of an upgrade",
            hint="approve with --mode upgrade",
        )
    result: dict[str, Any] | None = None
    whole = None
    upgrade: Upgrade | None = None
    if mode == "upgrade":
        if ancestor is None:
            raise _no_base(transfer, target)
        result, plan, upgrade = upgrade_plan(
            head,
            incoming_config(ctx.session, transfer, shared=True),
            ancestor,
            only=sections,
            keep=keep,
            take=take,
            prefer=prefer,
        )
        if upgrade.conflicts:
            raise UnresolvedConflicts(
                f"transfer {transfer.id} has {len(upgrade.conflicts)} unresolved conflict(s)",
                problems=[c.describe() for c in upgrade.conflicts],
                hint="keep ours with --keep ADDRESS or take theirs with --take ADDRESS "
                "(repeatable), or resolve the rest with --prefer ours|theirs; "
                f"'provisioner inbox show {transfer.id}' shows base, ours and theirs",
            )
    elif mode == "replace" and sections is None and transfer.plan.get("mode") == "replace":
        # exactly what was planned and checked at receipt, against this very version
        plan = transfer.plan
        whole = plan.get("incoming_digest")
        if whole is None:
            result = combine(
                head.data, incoming_config(ctx.session, transfer, shared=True), mode="replace"
            )
    else:
        result, plan = make_plan(
            head, incoming_config(ctx.session, transfer, shared=True), mode=mode, only=sections
        )
    report = data_impact.NO_IMPACT
    if data_impact.has_records(ctx, target.id):  # counted again: records change meanwhile
        if result is None:
            result = incoming_config(
                ctx.session, transfer
            )  # a whole document: what impact needs to read
        report = data_impact.impact(ctx, target.id, head.data, result)
    forced = _check_impact(report, remaps, force, transfer.id)
    if result is None:
        # a whole document replaces a whole document: the stored, normalised sections
        # already are the new version's RFC 8785 text; the database copies them over
        assert whole is not None
        version = configs.commit_transfer_copy(
            ctx, target, transfer.id, whole, author=actor.login, base_version=head.version
        )
    else:
        version = configs.commit_version(
            ctx,
            target,
            result,
            author=actor.login,
            origin=f"transfer:{transfer.id}",
            base_version=head.version,
            near=(transfer.incoming_digest,),  # what arrived: the result differs from it little
        )
    crashpoint("approve.after_version")
    remapped: dict[str, int] | None = None
    if remaps:
        assert result is not None  # remaps are only valid when records hold removed values
        remapped = data_impact.apply_remap(
            ctx, target.id, result, remaps, actor=actor.login, purpose=f"transfer:{transfer.id}"
        )
    crashpoint("approve.after_remap")
    _claim(ctx, transfer, "applied", actor, applied_version=version or head.version)
    crashpoint("approve.after_claim")
    lineage.record(ctx, transfer, plan["sections"], version or head.version)
    crashpoint("approve.after_lineage")
    event = approved_event(
        ctx,
        target.id,
        transfer.id,
        actor=actor.login,
        bundle_digest=transfer.payload_digest,
        signer_key_id=transfer.signer_key_id,
        source_tenant=transfer.source_tenant,
        mode=mode,
        plan=plan,
        from_version=head.version,
        to_version=version,
        impact=report,
        remapped=remapped,
        forced=forced,
    )
    if upgrade is not None:
        event["details"].update(
            resolved=upgrade.resolved, kept=len(upgrade.kept), taken=len(upgrade.taken)
        )
    audit.record_many(ctx, [event])
    crashpoint("approve.after_audit")
    if version is None:
        return Decision(
            transfer,
            "unchanged",
            head.version,
            "the configuration already matched; nothing changed",
            remapped=remapped,
            forced=forced or None,
        )
    return Decision(transfer, "applied", version, remapped=remapped, forced=forced or None)


def reject(ctx: Context, actor: Actor, transfer_id: int, *, reason: str | None = None) -> Decision:
    """Refuse a pending transfer of the actor's tenant (admins); the configuration stays."""
    _mine(ctx, actor, transfer_id)
    require_admin(actor, "reject incoming configurations")
    transfer = _lock(ctx, transfer_id)
    _require_pending(transfer)
    _claim(ctx, transfer, "rejected", actor, reason=reason)
    audit.record(
        ctx,
        tenant_id=transfer.tenant_id,
        actor=actor.login,
        action="transfer:rejected",
        subject=f"transfer:{transfer.id}",
        bundle_digest=transfer.payload_digest,
        signer_key_id=transfer.signer_key_id,
        source_tenant=transfer.source_tenant,
        reason=reason,
    )
    return Decision(transfer, "rejected")


def rollback(ctx: Context, actor: Actor, transfer_id: int) -> int | None:
    """Undo an applied transfer: the version before it becomes current again.

    Its lineage entry stops counting with it (the transfer is no longer
    applied): the base of the next upgrade from its source is the previous one.
    """
    transfer = _mine(ctx, actor, transfer_id)
    require_admin(actor, "roll back the configuration")
    if transfer.status != "applied" or transfer.applied_version is None:
        raise PlanConflict(f"transfer {transfer_id} is {transfer.status}, not applied")
    target = ctx.session.get(Tenant, transfer.tenant_id)
    assert target is not None
    made = ctx.session.scalar(
        select(ConfigVersion.origin).where(
            ConfigVersion.tenant_id == target.id, ConfigVersion.version == transfer.applied_version
        )
    )
    if made != f"transfer:{transfer.id}":
        # the approval changed nothing (the configuration already matched): neither may this
        claimed = ctx.session.execute(
            update(Transfer)
            .where(Transfer.id == transfer.id, Transfer.status == "applied")
            .values(status="rolled_back", rolled_back_at=ctx.clock.now())
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise PlanConflict(f"transfer {transfer_id} was rolled back by someone else meanwhile")
        audit.record(
            ctx,
            tenant_id=target.id,
            actor=actor.login,
            action="transfer:rolled_back",
            subject=f"transfer:{transfer.id}",
            note="the approval had changed nothing; the configuration stays as it is",
        )
        return None
    before = transfer.applied_version - 1
    if target.config_version != transfer.applied_version:
        raise PlanConflict(
            f"the configuration changed after transfer {transfer_id} was applied "
            f"(now version {target.config_version})",
            hint=f"roll back explicitly: provisioner config rollback -t {target.slug} "
            f"--to {before} (this also undoes the later changes)",
        )
    return configs.rollback(ctx, actor, target, before, reason=f"undo transfer {transfer_id}")


def envelope_summary(raw: bytes) -> dict[str, Any]:
    """What a bundle file says about itself, without verifying it (``bundle inspect``)."""
    payload_type, payload, sigs = parse_envelope(raw)
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise BundleRejected("bundle payload is not JSON") from None
    if not isinstance(data, dict):
        raise BundleRejected("bundle payload is not a JSON object")
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    return {
        "payload_type": payload_type,
        "signatures": [{"keyid": k, "sig": base64.b64encode(s).decode()} for k, s in sigs],
        "payload_bytes": len(payload),
        "format": data.get("format"),
        "format_version": data.get("format_version"),
        "bundle_id": data.get("bundle_id"),
        "created_at": data.get("created_at"),
        "expires_at": data.get("expires_at"),
        "source": data.get("source"),
        "publisher": data.get("publisher"),
        "audience": data.get("audience"),
        "sections": [k for k in (config or {}) if k != "schema_version"],
        "verified": False,
    }
