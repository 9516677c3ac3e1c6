"""HQ rollout: one signed configuration to many target tenants (REQUIREMENTS A/B).

    run = rollout.start(ctx, actor, raw, [Target("shop-1"), Target("shop-2", key=True)])
    rollout.process(app, "hq-admin", run.id, keys={"shop-2": "cpk-..."})
    rollout.summary(ctx, actor, run.id)      # per-target status table

A target takes part either

* with its own copy key (given for this run; the configuration is re-signed
  bound to that key, and lands in the target's inbox), or
* because its admin registered the source's key as a trusted publisher:
  policy ``manual`` -> the transfer lands in the inbox; policy ``auto`` -> it
  is received (verified, planned, stored) and approved at once on behalf of the
  admin who registered the publisher, with the usual audit events
  (``transfer:received``, ``transfer:approved``, ``rollout:auto_applied``).
  An auto target whose records would be stranded by the change (see
  :mod:`provisioner.services.crm.impact`) is not applied: its transfer waits in
  the inbox for an admin to remap or force, and the status table says why.

How it runs (and why it is fast and safe):

* The bundle is verified ONCE per call of :func:`process` -- Ed25519 signature
  by the source's active key, strict parsing, schema, expiry, not bound to a
  copy key -- because every publisher-based target receives exactly these
  bytes. Per target remain the checks that depend on the target: it exists and
  is active, may receive (plan, not a sandbox, no active integrations), pins
  this very key (same key id and public key bytes), has not received this
  bundle already, has disk room for it, and the plan against its current
  configuration (computed once per distinct current document: targets at the
  same version of a template share it) keeps its references valid.
* Publisher-based targets are processed in batches (``batch_size``, default
  100): one transaction per batch locks the batch's pending status rows and
  target tenants, checks each target, and writes the accepted ones' transfers,
  configuration versions, tenant pointers, audit events and status rows with a
  few multi-row statements -- through the services' bulk primitives
  (``transfers.insert_many``, ``configs.commit_versions`` with its guarded
  pointer, ``audit.record_many`` with the events the single-target services
  write), so a batch follows the rules of one target; it only orchestrates. A
  target refused by a check is marked ``rejected`` with its reason in the same
  transaction and nothing else of it is written.
* If anything unexpected fails in a batch, that batch is rolled back as a whole
  and its targets are processed again one by one, each in its own transaction
  through the ordinary ``transfers.accept`` / ``transfers.approve`` services; a
  target that fails there is marked ``failed`` with the error. So one failing
  target never blocks or corrupts the others.
* Keyed targets always go one by one (each needs its own re-signed bundle).
* Interrupted (Ctrl-C, a crash, a lost connection): the batch in flight rolls
  back entirely, the committed ones stay; :func:`process` again (``rollout
  --resume RUN``) continues with the targets still ``pending``, and a target
  never receives the bundle twice. Copy keys are secrets and are never stored:
  resuming a keyed target needs its key again.

Upgrades: a target that already took a version from this source (its lineage)
is planned three-way (:func:`provisioner.services.transfers.upgrade_plan`), its
own changes kept. The ``upgrade_policy`` of :func:`process` decides for an
``auto`` target: ``apply_clean`` applies an upgrade without conflicts and leaves
one with conflicts waiting in the inbox ("waiting with N conflicts");
``wait`` leaves every upgrade waiting for the tenant's admin. The policy is not
stored with the run: give it again when resuming.

Statuses: pending -> applied | inbox | rejected (the target refused: plan,
sandbox, trust, quota, key...) | failed (an unexpected error).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, insert, select, update

from provisioner.bundles.payload import (
    Audience,
    VerifiedBundle,
    build_bundle,
    new_bundle_id,
    read_bundle,
)
from provisioner.bundles.signing import key_id, raw_public
from provisioner.canonical import Pieces, canonical_bytes, canonical_members, sha256_hex
from provisioner.clock import as_utc
from provisioner.config.document import SECTION_NAMES
from provisioner.config.memo import IdentityMemo
from provisioner.crashpoints import crashpoint
from provisioner.db import plans
from provisioner.db.models import (
    ConfigVersion,
    CopyKeyRow,
    Membership,
    Tenant,
    Transfer,
    TrustedPublisher,
    User,
)
from provisioner.db.provisioning_models import RolloutRun, RolloutTarget
from provisioner.errors import (
    BundleRejected,
    KeyRejected,
    NotFound,
    ProvisionerError,
    TransferRefused,
    ValidationFailed,
)
from provisioner.gcpause import paused_gc
from provisioner.identifiers import SLUG
from provisioner.lru import LRU
from provisioner.security import copykey
from provisioner.services import audit, configs, documents, lineage, signing, transfers
from provisioner.services.actors import Actor, get_tenant, require_admin, resolve
from provisioner.services.context import Context, Provisioner
from provisioner.services.crm import impact as data_impact
from provisioner.services.eligibility import require_can_receive, require_can_send
from provisioner.services.provisioning import quotas

STATUSES = ("pending", "applied", "inbox", "rejected", "failed")
MAX_TARGETS = 10_000
BATCH_SIZE = 100
MAX_BATCH_SIZE = 1_000
#: plans a run keeps for targets at the same document in later batches (least recently
#: used dropped first): targets at a few documents share them; targets each at a document
#: of its own would otherwise keep every result and plan until the run ends
SHARED_PLANS = 2 * MAX_BATCH_SIZE

#: ``on_progress(target_slug, status)``: called once per processed target, after its commit
Progress = Callable[[str, str], None]
#: what an ``auto`` target does with a three-way upgrade (see the module doc)
UpgradePolicy = Literal["apply_clean", "wait"]
UPGRADE_POLICIES: tuple[str, ...] = ("apply_clean", "wait")


@dataclass(frozen=True)
class Target:
    slug: str
    key: bool = False  # takes part with its own copy key (given to process())


def _verify_source_bundle(ctx: Context, source: Tenant, raw: bytes) -> VerifiedBundle:
    public = signing.public_key(ctx, source.id)
    bundle = read_bundle(raw, {key_id(public): public}.get)
    if bundle.payload.source.tenant != source.slug:
        raise BundleRejected(
            f"the bundle is from {bundle.payload.source.tenant!r}, not from {source.slug!r}"
        )
    if bundle.payload.audience is not None:
        raise BundleRejected(
            "a rollout bundle must not be bound to a copy key",
            hint="export it without --key; keyed targets get their own copy",
        )
    if ctx.clock.now() >= bundle.expires_at:
        raise BundleRejected(
            f"bundle expired at {bundle.payload.expires_at}", hint="export it again"
        )
    return bundle


def start(ctx: Context, actor: Actor, raw: bytes, targets: Sequence[Target]) -> RolloutRun:
    """Verify the bundle and record the run with every target ``pending``."""
    require_admin(actor, "roll out configurations")
    ctx.enter_tenant(actor.tenant_id)  # the run and its targets are the source's rows
    source = get_tenant(ctx, actor.tenant_slug)
    require_can_send(source)
    bundle = _verify_source_bundle(ctx, source, raw)
    slugs = [t.slug for t in targets]
    seen: set[str] = set()
    twice = sorted({s for s in slugs if s in seen or seen.add(s)})  # type: ignore[func-returns-value]
    problems = [f"invalid tenant slug {s!r}" for s in slugs if not SLUG.match(s)]
    problems += [f"{s!r} is listed twice" for s in twice]
    problems += [f"{source.slug!r} is the source" for s in slugs if s == source.slug]
    if not targets:
        problems.append("no targets")
    if len(targets) > MAX_TARGETS:
        problems.append(f"at most {MAX_TARGETS} targets per run")
    if problems:
        raise ValidationFailed(
            "cannot start the rollout",
            problems=problems,
            hint="--targets SLUG,SLUG,... or --targets-file FILE",
        )
    now = ctx.clock.now()
    run = RolloutRun(
        tenant_id=source.id,
        bundle_id=bundle.payload.bundle_id,
        bundle_digest=bundle.digest,
        envelope=raw,
        status="running",
        created_at=now,
        created_by=actor.login,
    )
    ctx.session.add(run)
    ctx.session.flush()
    ctx.session.execute(
        insert(RolloutTarget),
        [
            {
                "run_id": run.id,
                "tenant_id": source.id,
                "position": n,
                "target_slug": t.slug,
                "uses_key": t.key,
                "status": "pending",
            }
            for n, t in enumerate(targets, start=1)
        ],
    )
    audit.record(
        ctx,
        tenant_id=source.id,
        actor=actor.login,
        action="rollout:started",
        subject=f"rollout:{run.id}",
        bundle_id=bundle.payload.bundle_id,
        bundle_digest=bundle.digest,
        targets=len(targets),
    )
    return run


@dataclass
class _Work:
    run_id: int
    login: str
    source_id: int
    source_slug: str
    source_key_id: str
    source_public: bytes
    raw: bytes
    bundle: VerifiedBundle
    upgrade_policy: UpgradePolicy = "apply_clean"

    @property
    def source(self) -> str:
        """The lineage source of this run's bundle (verified: the source tenant)."""
        return lineage.source_of_bundle(self.source_slug, self.source_key_id, verified_source=True)

    @property
    def received_by(self) -> str:
        return f"{self.login}@{self.source_slug}"

    @property
    def attempted_by(self) -> str:
        return f"tenant:{self.source_slug}"


# --------------------------------------------------------------------------- one by one


def _bound_copy(ctx: Context, source: Tenant, bundle: VerifiedBundle, key_text: str) -> bytes:
    """The same configuration, signed again by the source, bound to the target's key."""
    key = copykey.parse(key_text)
    row = ctx.session.scalar(select(CopyKeyRow).where(CopyKeyRow.selector == key.selector))
    expires_at = bundle.expires_at
    target_slug = None
    if row is not None:
        expires_at = min(expires_at, as_utc(row.expires_at))
        owner = ctx.session.get(Tenant, row.tenant_id)
        target_slug = owner.slug if owner else None
    bundle_id = new_bundle_id()
    return build_bundle(
        config=bundle.config,
        source=bundle.payload.source,
        signer=signing.signer(ctx, source.id),
        created_at=ctx.clock.now(),
        expires_at=expires_at,
        bundle_id=bundle_id,
        audience=Audience(
            copy_key=key.selector,
            tenant=target_slug,
            binding=key.binding(
                bundle_id,
                source_tenant=source.slug,
                publisher_key_id=signing.key_id_of(ctx, source.id),
            ),
        ),
    )


def _needs_review(plan: Mapping[str, Any]) -> list[str]:
    """Blocking data-impact items of a plan (records a change would strand)."""
    return data_impact.unresolved(plan.get("impact") or data_impact.NO_IMPACT)


def _upgrade_wait(plan: Mapping[str, Any], policy: UpgradePolicy) -> str | None:
    """Why an auto target's three-way upgrade waits in the inbox (None: it may apply)."""
    upgrade = plan.get("upgrade")
    if upgrade is None:
        return None
    if upgrade["conflicts"]:
        return (
            f"waiting in the inbox with {len(upgrade['conflicts'])} conflict(s): an admin "
            "resolves them with 'provisioner inbox approve --keep/--take/--prefer'"
        )
    if policy == "wait":
        return "waiting in the inbox: upgrades wait for the tenant's admin (policy wait)"
    return None


def _review_reason(blocking: Sequence[str]) -> str:
    return (
        "waiting in the inbox: applying it would strand data ("
        + "; ".join(blocking[:3])
        + (f"; and {len(blocking) - 3} more" if len(blocking) > 3 else "")
        + "); an admin remaps or forces it with 'provisioner inbox approve'"
    )


def _deliver(ctx: Context, work: _Work, row: RolloutTarget, keys: Mapping[str, str]) -> None:
    """Deliver to one target inside the caller's transaction (the ordinary services)."""
    target = get_tenant(ctx, row.target_slug)
    if row.uses_key:
        key_text = keys.get(row.target_slug)
        if key_text is None:
            raise ValidationFailed(
                f"no copy key given for {row.target_slug!r}",
                hint=f"pass --key {row.target_slug}=KEY",
            )
        require_can_receive(target)
        source = ctx.session.get(Tenant, work.source_id)
        assert source is not None
        raw = _bound_copy(ctx, source, work.bundle, key_text)
        quotas.require_room(ctx, target, len(raw), what="the incoming bundle")
        transfer = transfers.accept(
            ctx, target, raw, received_by=work.received_by, attempted_by=work.attempted_by
        )
        row.status, row.via, row.transfer_id = "inbox", "key", transfer.id
        return
    pin = ctx.session.scalar(
        select(TrustedPublisher).where(
            TrustedPublisher.tenant_id == target.id, TrustedPublisher.key_id == work.source_key_id
        )
    )
    if pin is None:
        raise KeyRejected(_not_trusted(row.target_slug, work.source_slug), hint=_NOT_TRUSTED_HINT)
    incoming = len(work.raw) + (len(work.bundle.config_json) if pin.policy == "auto" else 0)
    quotas.require_room(ctx, target, incoming, what="the incoming configuration")
    transfer = transfers.accept(
        ctx, target, work.raw, received_by=work.received_by, attempted_by=work.attempted_by
    )
    row.via, row.transfer_id = pin.policy, transfer.id
    if pin.policy != "auto":
        row.status = "inbox"
        return
    blocking = _needs_review(transfer.plan)
    if blocking:
        row.status, row.reason = "inbox", _review_reason(blocking)
        return
    waiting = _upgrade_wait(transfer.plan, work.upgrade_policy)
    if waiting is not None:
        row.status, row.reason = "inbox", waiting
        return
    decision = transfers.approve(ctx, resolve(ctx, pin.added_by, target.slug), transfer.id)
    if decision.outcome not in {"applied", "unchanged"}:
        raise TransferRefused(decision.message or f"transfer {transfer.id} not applied")
    audit.record_many(
        ctx, [_auto_applied(ctx, work, target.id, pin, transfer.id, decision.version)]
    )
    row.status, row.applied_version = "applied", decision.transfer.applied_version


def _auto_applied(
    ctx: Context,
    work: _Work,
    tenant_id: int,
    pin: TrustedPublisher,
    transfer_id: int,
    version: int | None,
) -> dict[str, Any]:
    """The ``rollout:auto_applied`` audit event (one by one and in batches)."""
    return audit.event(
        ctx,
        tenant_id=tenant_id,
        actor=f"policy:auto({pin.added_by})",
        action="rollout:auto_applied",
        subject=f"transfer:{transfer_id}",
        rollout=work.run_id,
        source_tenant=work.source_slug,
        publisher=pin.key_id,
        version=version,
    )


_NOT_TRUSTED_HINT = (
    "its admin registers the publisher (provisioner publisher trust) or gives you a copy key"
)


def _not_trusted(slug: str, source: str) -> str:
    return f"{slug!r} has no copy key in this rollout and does not trust {source!r} as a publisher"


def _record_failure(app: Provisioner, target_id: int, status: str, reason: str) -> None:
    with app.transaction() as ctx:
        ctx.enter_operator("write")  # the rollout's own bookkeeping (cross-tenant work)
        row = ctx.session.get(RolloutTarget, target_id)
        assert row is not None
        if row.status == "pending":
            row.status, row.reason, row.updated_at = status, reason[:2000], ctx.clock.now()


def _interruption(exc: BaseException) -> BaseException | None:
    """The Ctrl-C (or exit) behind an error, if any.

    An interrupt can surface as another error: psycopg cancels the query it
    interrupts and may close the connection, and the rollback that follows then
    fails -- that error replaces the KeyboardInterrupt, which stays in its context.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if not isinstance(current, Exception):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _one(app: Provisioner, work: _Work, target_id: int, keys: Mapping[str, str]) -> str | None:
    """Process one pending target in its own transaction; its new status (None: not pending)."""
    try:
        with app.transaction() as ctx:
            ctx.enter_operator("write")  # the source's status row and the target's rows
            row = ctx.session.scalar(
                select(RolloutTarget)
                .where(RolloutTarget.id == target_id, RolloutTarget.status == "pending")
                .with_for_update()
            )
            if row is None:  # processed meanwhile by a concurrent resume
                return None
            _deliver(ctx, work, row, keys)
            row.updated_at = ctx.clock.now()
            ctx.session.flush()
            crashpoint("rollout.one.after_deliver")
            return row.status
    except ProvisionerError as exc:
        _record_failure(app, target_id, "rejected", exc.diagnostics())
        return "rejected"
    except Exception as exc:  # one target failing must never stop the others
        stop = _interruption(exc)
        if stop is not None:  # ... but an interrupt stops the run (it is resumable)
            raise stop from exc
        _record_failure(app, target_id, "failed", f"{type(exc).__name__}: {exc}")
        return "failed"


# --------------------------------------------------------------------------- batches


#: a plan's key: the current document's digest and the lineage base (None: no base)
_PlanKey = tuple[str, tuple[Any, ...] | None]


@dataclass
class _Shared:
    """What targets at the same current document share: the plan and the result."""

    base: dict[str, Any]  # the current document the plan was made against
    plan: dict[str, Any]
    body: bytes | Pieces  # the resulting document, RFC 8785 (joined when stored whole)
    digest: str
    result: Any = None  # ``body`` parsed (None: the bundle's own configuration)


@dataclass
class _Accepted:
    """A target that passed every check, and what it gets."""

    row: RolloutTarget
    tenant: Tenant
    pin: TrustedPublisher
    shared: _Shared
    version: int  # its current version (the plan's base)
    digest: str
    plan: dict[str, Any]
    notes: list[str]  # why an auto target waits in the inbox instead
    root: str  # the stored document its current version is (or differs from)

    @property
    def apply(self) -> bool:
        return self.pin.policy == "auto" and not self.notes

    @property
    def new_version(self) -> int | None:
        """The version applying makes (None: the document already is the result)."""
        return self.version + 1 if self.shared.digest != self.digest else None

    @property
    def applied_version(self) -> int | None:
        return (self.new_version or self.version) if self.apply else None


class _Batch:
    """Publisher-based targets of one batch, checked and written in one transaction."""

    def __init__(
        self,
        ctx: Context,
        work: _Work,
        shared: LRU[_PlanKey, _Shared],
        stored: set[str],
        memo: IdentityMemo,
    ) -> None:
        self.ctx, self.work, self.shared = ctx, work, shared
        #: the run's section merges, reference checks and section bytes (by identity)
        self.memo = memo
        #: digests of documents known to be stored (committed batches' and this one's): the
        #: run's document is looked up by its first batch only
        self.stored = stored
        self.bases: dict[tuple[Any, ...], lineage.Base | None] = {}
        self.now = ctx.clock.now()
        self.updates: list[dict[str, Any]] = []
        self.results: list[tuple[str, str]] = []
        #: current versions a plan is made from, loaded together (the session holds rows
        #: weakly)
        self.held: list[ConfigVersion] = []

    def refuse(self, row: RolloutTarget, exc: ProvisionerError) -> None:
        self.updates.append(
            {
                "id": row.id,
                "status": "rejected",
                "via": None,
                "transfer_id": None,
                "applied_version": None,
                "reason": exc.diagnostics()[:2000],
                "updated_at": self.now,
            }
        )
        self.results.append((row.target_slug, "rejected"))

    def _section_bytes(self, value: Any) -> bytes:
        if not isinstance(value, dict | list):
            return canonical_bytes(value)
        return self.memo.get("canonical", (value,), lambda: canonical_bytes(value))

    def _shared_for(
        self, tenant_id: int, version: int, digest: str, base_key: tuple[Any, ...] | None = None
    ) -> _Shared:
        """The plan for a current document (and lineage base: ``base_key``), made once."""
        cache_key = (digest, base_key)
        known = self.shared.get(cache_key)
        if known is not None:
            return known
        # read-only and shared: a stored document parsed once, the tenant's delta applied
        base = configs.Current(
            version, digest, configs.version_data(self.ctx, tenant_id, version, shared=True)
        )
        ancestor = None
        if base_key is not None:  # the same bundles taken: the same base, read once
            ancestor = self.bases.get(base_key)
            if ancestor is None:
                ancestor = lineage.base(self.ctx, tenant_id, self.work.source)
                self.bases[base_key] = ancestor
        if ancestor is not None:  # an upgrade: three-way, the tenant's changes kept
            result, plan, _ = transfers.upgrade_plan(
                base, self.work.bundle.config, ancestor, memo=self.memo
            )
        else:
            result, plan = transfers.make_plan(
                base, self.work.bundle.config, mode="replace", only=None
            )
        body: bytes | Pieces
        if (
            ancestor is None
            and len(plan["sections"]) == len(SECTION_NAMES)
            and result["workflows"] is self.work.bundle.config["workflows"]
        ):
            body = self.work.bundle.config_json  # a whole document replaces a whole document
            plan["incoming_digest"] = "sha256:" + sha256_hex(body)  # as transfers.accept
        else:  # the sections the tenant shares with others serialised once per run
            body = canonical_members(result, self._section_bytes)
        plan["signer"] = {
            "key_id": self.work.bundle.key_id,
            "verified_source": True,
            "pinned_as": None,
        }
        made = _Shared(
            base.data,
            plan,
            body,
            "sha256:" + sha256_hex(body),
            None if body is self.work.bundle.config_json else result,
        )
        self.shared.put(cache_key, made)
        return made

    def run(self, rows: Sequence[RolloutTarget]) -> list[tuple[str, str]]:
        ctx, work = self.ctx, self.work
        session = ctx.session
        tenants = {
            t.slug: t
            for t in session.scalars(
                select(Tenant)
                .where(Tenant.slug.in_([r.target_slug for r in rows]))
                .order_by(Tenant.id)
                .with_for_update()
            )
        }
        ids = [t.id for t in tenants.values()]
        pins = {
            p.tenant_id: p
            for p in session.scalars(
                select(TrustedPublisher).where(
                    TrustedPublisher.tenant_id.in_(ids),
                    TrustedPublisher.key_id == work.source_key_id,
                )
            )
        }
        admins = set(
            session.execute(
                select(Membership.tenant_id, User.login)
                .join(User, User.id == Membership.user_id)
                .where(
                    Membership.tenant_id.in_(ids),
                    Membership.role == "admin",
                    User.login.in_({p.added_by for p in pins.values()}),
                )
            )
        )
        received = set(
            session.scalars(
                select(Transfer.tenant_id).where(
                    Transfer.tenant_id.in_(ids), Transfer.bundle_id == work.bundle.payload.bundle_id
                )
            )
        )
        based = lineage.base_keys(ctx, ids, work.source)
        bases = {tid: key for tid, (key, _) in based.items()}
        heads = {
            tid: (version, digest, base_digest or digest)
            for tid, version, digest, base_digest in session.execute(
                select(
                    ConfigVersion.tenant_id,
                    ConfigVersion.version,
                    ConfigVersion.digest,
                    ConfigVersion.base_digest,
                )
                .join(
                    Tenant,
                    (Tenant.id == ConfigVersion.tenant_id)
                    & (Tenant.config_version == ConfigVersion.version),
                )
                .where(ConfigVersion.tenant_id.in_(ids))
            )
        }
        # the current versions that plans are still to be made from (one per distinct
        # document and base: none once earlier batches planned them), in one statement
        unplanned: dict[_PlanKey, tuple[int, int]] = {}
        for tid, (version, digest, _) in heads.items():
            key = (digest, bases.get(tid))
            if key not in self.shared:
                unplanned.setdefault(key, (tid, version))
        self.held = configs.prefetch(ctx, list(unplanned.values()))
        records = quotas.crm_records(ctx, ids)  # scoped per tenant (row-level security)
        usage = quotas.usage_many(ctx, ids, records=records)
        with_records = {tid for tid, count in records.items() if count}

        accepted: list[_Accepted] = []
        for row in rows:
            tenant = tenants.get(row.target_slug)
            try:
                if tenant is None or tenant.status != "active":
                    raise NotFound(
                        f"no tenant {row.target_slug!r}",
                        hint="'provisioner tenant list' shows the tenants",
                    )
                require_can_receive(tenant)
                pin = pins.get(tenant.id)
                if pin is None or pin.public_key != work.source_public:
                    raise KeyRejected(
                        _not_trusted(row.target_slug, work.source_slug), hint=_NOT_TRUSTED_HINT
                    )
                if tenant.id in received:
                    raise BundleRejected(
                        f"bundle {work.bundle.payload.bundle_id} was already received by "
                        f"{tenant.slug!r}; a bundle is delivered once"
                    )
                if tenant.id not in heads:
                    raise NotFound(f"tenant {tenant.slug!r} has no configuration")
                version, digest, root = heads[tenant.id]
                shared = self._shared_for(tenant.id, version, digest, bases.get(tenant.id))
                auto = pin.policy == "auto" and (tenant.id, pin.added_by) in admins
                changes = auto and shared.digest != digest
                incoming = len(work.raw) + (len(shared.body) if changes else 0)
                room = usage[tenant.id]
                if room.used_bytes + incoming > room.quota_bytes:
                    raise quotas.over_quota(
                        tenant, incoming, room, what="the incoming configuration"
                    )
                impact = data_impact.NO_IMPACT
                if tenant.id in with_records:  # counted now, on the records as they are
                    impact = transfers.data_impact_of(
                        ctx,
                        tenant.id,
                        shared.base,
                        bytes(shared.body) if shared.result is None else shared.result,
                    )
                plan = dict(
                    shared.plan,
                    base_version=version,
                    base_digest=digest,
                    impact=impact,
                    signer=dict(shared.plan["signer"], pinned_as=pin.label),
                )
                if "upgrade" in plan:  # shared by tenants with the same base: name its own
                    plan["upgrade"] = dict(plan["upgrade"], transfer=based[tenant.id][1])
                notes = []
                if pin.policy == "auto" and not auto:
                    notes.append(
                        f"waiting in the inbox: {pin.added_by!r}, who set the auto "
                        f"policy, is no longer an admin of {tenant.slug!r}"
                    )
                blocking = data_impact.unresolved(impact) if auto else []
                if blocking:
                    notes.append(_review_reason(blocking))
                waiting = _upgrade_wait(plan, work.upgrade_policy) if auto else None
                if waiting is not None:
                    notes.append(waiting)
                accepted.append(
                    _Accepted(row, tenant, pin, shared, version, digest, plan, notes, root)
                )
            except ProvisionerError as exc:
                self.refuse(row, exc)
        self._write(accepted)
        return self.results

    def _write(self, accepted: Sequence[_Accepted]) -> None:
        """Write the accepted targets with the services' bulk primitives (the same rules)."""
        ctx, work, now = self.ctx, self.work, self.now
        payload = work.bundle.payload
        # each plan's own part in its transfer row; the part targets share (the template's
        # change) stored once per distinct content, like the configuration as it arrived
        # and the bundle file (looked up by the run's first batch only: then known stored)
        parts = [plans.shared_document(a.plan) for a in accepted]
        if accepted:
            file_digest, file_body = transfers.file_document(work.bundle)
            shared = {digest: body for _, digest, body in parts}
            documents.store_many(
                ctx,
                {
                    work.bundle.config_digest: work.bundle.config_json,
                    file_digest: file_body,
                    **shared,
                },
                known=self.stored,
            )
            self.stored.update((work.bundle.config_digest, file_digest, *shared))
        ids = transfers.insert_many(
            ctx,
            [
                transfers.transfer_row(
                    work.bundle,
                    work.raw,
                    tenant_id=a.tenant.id,
                    base_version=a.version,
                    plan=plans.stored_form(own, digest),
                    received_at=now,
                    received_by=work.received_by,
                    decided_by=a.pin.added_by if a.apply else None,
                    applied_version=a.applied_version,
                )
                for a, (own, digest, _) in zip(accepted, parts, strict=True)
            ],
        )
        crashpoint("rollout.batch.after_transfers")
        applied = [
            (transfer_id, a) for transfer_id, a in zip(ids, accepted, strict=True) if a.apply
        ]
        # checked=True: run() checked each target's room for the bundle and its new version
        # (one query for the batch); the pointers move with the guard of every other change
        configs.commit_versions(
            ctx,
            [
                configs.NewVersion(
                    a.tenant,
                    a.version,
                    a.shared.body,
                    a.pin.added_by,
                    f"transfer:{transfer_id}",
                    digest=a.shared.digest,
                    base_digest=a.digest,
                    data=a.shared.result,
                    # a delta from the tenant's own base (its changes and the template's
                    # change), else from the template as it arrived
                    near=(a.root, work.bundle.config_digest),
                    base_root=a.root,
                )
                for transfer_id, a in applied
            ],
            checked=True,
            stored=self.stored,
        )
        crashpoint("rollout.batch.after_versions")
        events, lineages = [], []
        for transfer_id, a in zip(ids, accepted, strict=True):
            events.append(
                transfers.received_event(
                    ctx,
                    a.tenant.id,
                    transfer_id,
                    work.bundle,
                    received_by=work.received_by,
                    copy_key=None,
                    summary=a.plan["summary"],
                )
            )
            status = "applied" if a.apply else "inbox"
            self.updates.append(
                {
                    "id": a.row.id,
                    "status": status,
                    "via": a.pin.policy,
                    "transfer_id": transfer_id,
                    "applied_version": a.applied_version,
                    "reason": "; ".join(a.notes) or None,
                    "updated_at": now,
                }
            )
            self.results.append((a.row.target_slug, status))
            if not a.apply:
                continue
            lineages.append(
                {
                    "tenant_id": a.tenant.id,
                    "source": work.source,
                    "transfer_id": transfer_id,
                    "source_version": payload.source.config_version,
                    "source_digest": payload.source.config_digest,
                    "bundle_digest": work.bundle.digest,
                    "sections": a.plan["sections"],
                    "applied_version": a.applied_version,
                }
            )
            events.append(
                transfers.approved_event(
                    ctx,
                    a.tenant.id,
                    transfer_id,
                    actor=a.pin.added_by,
                    bundle_digest=work.bundle.digest,
                    signer_key_id=work.bundle.key_id,
                    source_tenant=payload.source.tenant,
                    mode=a.plan["mode"],
                    plan=a.plan,
                    from_version=a.version,
                    to_version=a.new_version,
                    impact=a.plan["impact"],
                )
            )
            events.append(_auto_applied(ctx, work, a.tenant.id, a.pin, transfer_id, a.new_version))
        audit.record_many(ctx, events)
        crashpoint("rollout.batch.after_audit")
        lineage.record_many(ctx, lineages)
        if self.updates:
            ctx.session.execute(update(RolloutTarget), self.updates)
        crashpoint("rollout.batch.after_status")


@paused_gc()  # a batch's plans and rows are many cycle-free containers (see gcpause)
def _batch(
    app: Provisioner,
    work: _Work,
    target_ids: Sequence[int],
    shared: LRU[_PlanKey, _Shared],
    stored: set[str],
    memo: IdentityMemo,
) -> list[tuple[str, str]]:
    """One batch in one transaction. ``stored``: digests of documents committed batches
    stored or found stored; this batch's are added once it has committed."""
    found = set(stored)
    with app.transaction() as ctx:
        ctx.enter_operator("write")  # the batch is cross-tenant: its targets' rows, together
        rows = list(
            ctx.session.scalars(
                select(RolloutTarget)
                .where(RolloutTarget.id.in_(target_ids), RolloutTarget.status == "pending")
                .order_by(RolloutTarget.id)
                .with_for_update()
            )
        )
        done = _Batch(ctx, work, shared, found, memo).run(rows) if rows else []
    stored |= found  # committed: a stored document is never removed
    return done


# --------------------------------------------------------------------------- process


def _chunks(items: Sequence[tuple[int, bool]], size: int) -> Iterable[list[tuple[int, bool]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def process(
    app: Provisioner,
    login: str,
    run_id: int,
    *,
    keys: Mapping[str, str] | None = None,
    on_progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
    upgrade_policy: UpgradePolicy = "apply_clean",
) -> RolloutRun:
    """Process the run's pending targets (see the module doc); then finish the run."""
    if upgrade_policy not in UPGRADE_POLICIES:
        raise ValidationFailed(
            f"unknown upgrade policy {upgrade_policy!r}", hint="apply_clean or wait"
        )
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValidationFailed(
            f"the batch size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}"
        )
    keys = dict(keys or {})
    with app.transaction() as ctx:
        with ctx.operator("read"):  # the run's source, by id; the admin check below decides
            run = ctx.session.get(RolloutRun, run_id)
        if run is None:
            raise NotFound(f"no rollout {run_id}")
        source = ctx.session.get(Tenant, run.tenant_id)
        assert source is not None
        actor = resolve(ctx, login, source.slug)  # in the source's scope from here
        require_admin(actor, "roll out configurations")
        require_can_send(source)
        bundle = _verify_source_bundle(ctx, source, run.envelope)
        work = _Work(
            run.id,
            login,
            source.id,
            source.slug,
            bundle.key_id,
            raw_public(signing.public_key(ctx, source.id)),
            run.envelope,
            bundle,
            upgrade_policy,
        )
        pending = [
            (tid, bool(uses_key))
            for tid, uses_key in ctx.session.execute(
                select(RolloutTarget.id, RolloutTarget.uses_key)
                .where(RolloutTarget.run_id == run_id, RolloutTarget.status == "pending")
                .order_by(RolloutTarget.position)
            )
        ]
        slugs = dict(
            ctx.session.execute(
                select(RolloutTarget.id, RolloutTarget.target_slug).where(
                    RolloutTarget.run_id == run_id, RolloutTarget.status == "pending"
                )
            ).all()
        )
    # the plans made in this run, by current document and base (the most recently used)
    shared: LRU[_PlanKey, _Shared] = LRU(SHARED_PLANS)
    stored: set[str] = set()  # documents committed batches stored or found stored
    # what targets share although their documents differ: the sections they did not touch
    memo = IdentityMemo()
    for chunk in _chunks(pending, batch_size):
        published = [tid for tid, uses_key in chunk if not uses_key]
        done: list[tuple[str, str]] = []
        if published:
            try:
                done = _batch(app, work, published, shared, stored, memo)
            except Exception as exc:  # isolate whatever it was: the targets go one by one
                stop = _interruption(exc)
                if stop is not None:  # not a failure: the person stopped the run
                    raise stop from exc
                _note_fallback(app, work, len(published), exc)
                done = []
                for tid in published:
                    status = _one(app, work, tid, keys)
                    if status is not None:
                        done.append((slugs[tid], status))
        for tid, uses_key in chunk:
            if uses_key:
                status = _one(app, work, tid, keys)
                if status is not None:
                    done.append((slugs[tid], status))
        if on_progress is not None:
            for slug, status in done:
                on_progress(slug, status)
        crashpoint("rollout.between_batches")  # the chunk is committed: the run stays whole
    return _finish(app, run_id)


def _note_fallback(app: Provisioner, work: _Work, targets: int, exc: Exception) -> None:
    """Audit that a batch was rolled back and is redone target by target (and why)."""
    with app.transaction() as ctx:
        audit.record(
            ctx,
            tenant_id=work.source_id,
            actor=work.login,
            action="rollout:batch_retried_one_by_one",
            subject=f"rollout:{work.run_id}",
            targets=targets,
            error=f"{type(exc).__name__}: {exc}"[:500],
        )


def _finish(app: Provisioner, run_id: int) -> RolloutRun:
    with app.transaction() as ctx:
        ctx.enter_operator("write")  # the rollout's own bookkeeping (cross-tenant work)
        run = ctx.session.get(RolloutRun, run_id)
        assert run is not None
        counts = _counts(ctx, run_id)
        if counts.get("pending", 0) == 0 and run.status != "finished":
            run.status, run.finished_at = "finished", ctx.clock.now()
            audit.record(
                ctx,
                tenant_id=run.tenant_id,
                actor=run.created_by,
                action="rollout:finished",
                subject=f"rollout:{run.id}",
                counts=counts,
            )
        return run


def _counts(ctx: Context, run_id: int) -> dict[str, int]:
    rows = ctx.session.execute(
        select(RolloutTarget.status, func.count())
        .where(RolloutTarget.run_id == run_id)
        .group_by(RolloutTarget.status)
    ).all()
    return {status: int(n) for status, n in rows}


def get(ctx: Context, actor: Actor, run_id: int) -> RolloutRun:
    """The run, for an admin of its source tenant (others get NotFound)."""
    ctx.enter_tenant(actor.tenant_id)  # the publisher's runs and their targets
    run = ctx.session.get(RolloutRun, run_id)
    if run is None or run.tenant_id != actor.tenant_id:
        raise NotFound(f"no rollout {run_id} in tenant {actor.tenant_slug!r}")
    require_admin(actor, "see rollouts")
    return run


def targets(ctx: Context, actor: Actor, run_id: int) -> list[RolloutTarget]:
    run = get(ctx, actor, run_id)
    return list(
        ctx.session.scalars(
            select(RolloutTarget)
            .where(RolloutTarget.run_id == run.id)
            .order_by(RolloutTarget.position)
        )
    )


def pending_count(ctx: Context, run_id: int) -> int:
    """How many of the run's targets are pending (for a progress bar; no actor: the run
    was checked against its publisher before, :func:`get`)."""
    with ctx.operator("read"):  # the run by id, whatever the transaction's scope
        return _counts(ctx, run_id).get("pending", 0)


def summary(ctx: Context, actor: Actor, run_id: int) -> dict[str, Any]:
    run = get(ctx, actor, run_id)
    rows = targets(ctx, actor, run_id)
    return {
        "run": run.id,
        "status": run.status,
        "bundle_id": run.bundle_id,
        "counts": _counts(ctx, run_id),
        "targets": [
            {
                "number": t.position,
                "tenant": t.target_slug,
                "status": t.status,
                "via": t.via,
                "transfer": t.transfer_id,
                "version": t.applied_version,
                "reason": t.reason,
            }
            for t in rows
        ],
    }
