"""HQ rollout: one signed configuration to many target tenants (REQUIREMENTS A/B).

    run = rollout.start(ctx, actor, raw, [Target("shop-1"), Target("shop-2", key=True)])
    rollout.process(app, "hq-admin", run.id, keys={"shop-2": "cpk-..."})
    rollout.targets(ctx, actor, run.id)      # per-target status table

A target takes part either

* with its own copy key (given for this run; the configuration is re-signed
  bound to that key, and lands in the target's inbox), or
* because its admin registered the source's key as a trusted publisher:
  policy ``manual`` -> the transfer lands in the inbox; policy ``auto`` -> it
  is received (fully verified and planned) and approved at once on behalf of
  the admin who registered the publisher, with the usual audit events.

Each target is processed in its OWN transaction: the transfer, the applied
version and the target's status row commit together, so one failing target
never blocks or corrupts the others, and an interrupted run is resumed by
processing the targets still ``pending`` (``rollout resume``). Copy keys are
secrets and are never stored: resuming a keyed target needs its key again.

Statuses: pending -> applied | inbox | rejected (the target refused: plan,
sandbox, signature, quota, key...) | failed (an unexpected error).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from provisioner.bundles.payload import (
    Audience,
    VerifiedBundle,
    build_bundle,
    new_bundle_id,
    read_bundle,
)
from provisioner.bundles.signing import key_id
from provisioner.clock import as_utc
from provisioner.db.models import CopyKeyRow, Tenant, TrustedPublisher
from provisioner.db.provisioning_models import RolloutRun, RolloutTarget
from provisioner.errors import (
    BundleRejected,
    KeyRejected,
    NotFound,
    PlanConflict,
    ProvisionerError,
    ValidationFailed,
)
from provisioner.security import copykey
from provisioner.services import audit, signing, transfers
from provisioner.services.actors import Actor, get_tenant, require_admin, resolve
from provisioner.services.context import Context, Provisioner
from provisioner.services.eligibility import require_can_send
from provisioner.services.provisioning import quotas
from provisioner.services.tenants import SLUG

STATUSES = ("pending", "applied", "inbox", "rejected", "failed")
MAX_TARGETS = 10_000


@dataclass(frozen=True)
class Target:
    slug: str
    key: bool = False  # takes part with its own copy key (given to process())


def _verify_source_bundle(ctx: Context, source: Tenant, raw: bytes) -> VerifiedBundle:
    public = signing.public_key(ctx, source.id)
    bundle = read_bundle(raw, {key_id(public): public}.get)
    if bundle.payload.source.tenant != source.slug:
        raise BundleRejected(f"the bundle is from {bundle.payload.source.tenant!r}, not from "
                             f"{source.slug!r}")
    if bundle.payload.audience is not None:
        raise BundleRejected("a rollout bundle must not be bound to a copy key",
                             hint="export it without --key; keyed targets get their own copy")
    if ctx.clock.now() >= bundle.expires_at:
        raise BundleRejected(f"bundle expired at {bundle.payload.expires_at}",
                             hint="export it again")
    return bundle


def start(ctx: Context, actor: Actor, raw: bytes, targets: Sequence[Target]) -> RolloutRun:
    """Verify the bundle and record the run with every target ``pending``."""
    require_admin(actor, "roll out configurations")
    source = get_tenant(ctx, actor.tenant_slug)
    require_can_send(source)
    bundle = _verify_source_bundle(ctx, source, raw)
    slugs = [t.slug for t in targets]
    problems = [f"invalid tenant slug {s!r}" for s in slugs if not SLUG.match(s)]
    problems += sorted({f"{s!r} is listed twice" for s in slugs if slugs.count(s) > 1})
    problems += [f"{source.slug!r} is the source" for s in slugs if s == source.slug]
    if not targets:
        problems.append("no targets")
    if len(targets) > MAX_TARGETS:
        problems.append(f"at most {MAX_TARGETS} targets per run")
    if problems:
        raise ValidationFailed("cannot start the rollout", problems=problems)
    now = ctx.clock.now()
    run = RolloutRun(tenant_id=source.id, bundle_id=bundle.payload.bundle_id,
                     bundle_digest=bundle.digest, envelope=raw, status="running",
                     created_at=now, created_by=actor.login)
    ctx.session.add(run)
    ctx.session.flush()
    ctx.session.add_all([
        RolloutTarget(run_id=run.id, tenant_id=source.id, position=n, target_slug=t.slug,
                      uses_key=t.key, status="pending")
        for n, t in enumerate(targets, start=1)])
    audit.record(ctx, tenant_id=source.id, actor=actor.login, action="rollout:started",
                 subject=f"rollout:{run.id}", bundle_id=bundle.payload.bundle_id,
                 bundle_digest=bundle.digest, targets=len(targets))
    return run


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
        config=bundle.config, source=bundle.payload.source,
        signer=signing.signer(ctx, source.id), created_at=ctx.clock.now(),
        expires_at=expires_at, bundle_id=bundle_id,
        audience=Audience(copy_key=key.selector, tenant=target_slug,
                          binding=key.binding(bundle_id, source_tenant=source.slug,
                                              publisher_key_id=signing.key_id_of(ctx, source.id))))


@dataclass
class _Work:
    run_id: int
    login: str
    source_id: int
    source_slug: str
    source_key_id: str
    raw: bytes
    bundle: VerifiedBundle


def _deliver(ctx: Context, work: _Work, row: RolloutTarget, keys: Mapping[str, str]) -> None:
    """Deliver to one target inside the caller's transaction; raise to refuse."""
    target = get_tenant(ctx, row.target_slug)
    received_by = f"{work.login}@{work.source_slug}"
    attempted_by = f"tenant:{work.source_slug}"
    if row.uses_key:
        key_text = keys.get(row.target_slug)
        if key_text is None:
            raise ValidationFailed(f"no copy key given for {row.target_slug!r}",
                                   hint=f"pass --key {row.target_slug}=KEY")
        source = ctx.session.get(Tenant, work.source_id)
        assert source is not None
        raw = _bound_copy(ctx, source, work.bundle, key_text)
        quotas.require_room(ctx, target, len(raw), what="the incoming bundle")
        transfer = transfers.accept(ctx, target, raw, received_by=received_by,
                                    attempted_by=attempted_by)
        row.status, row.via, row.transfer_id = "inbox", "key", transfer.id
        return
    pin = ctx.session.scalar(select(TrustedPublisher).where(
        TrustedPublisher.tenant_id == target.id,
        TrustedPublisher.key_id == work.source_key_id))
    if pin is None:
        raise KeyRejected(
            f"{row.target_slug!r} has no copy key in this rollout and does not trust "
            f"{work.source_slug!r} as a publisher",
            hint="its admin registers the publisher (provisioner publisher trust) or "
            "gives you a copy key")
    incoming = len(work.raw) * (2 if pin.policy == "auto" else 1)
    quotas.require_room(ctx, target, incoming, what="the incoming configuration")
    transfer = transfers.accept(ctx, target, work.raw, received_by=received_by,
                                attempted_by=attempted_by)
    row.via, row.transfer_id = pin.policy, transfer.id
    if pin.policy != "auto":
        row.status = "inbox"
        return
    decision = transfers.approve(ctx, pin.added_by, transfer.id)
    if decision.outcome not in {"applied", "unchanged"}:
        raise PlanConflict(decision.message or f"transfer {transfer.id} not applied")
    audit.record(ctx, tenant_id=target.id, actor=f"policy:auto({pin.added_by})",
                 action="rollout:auto_applied", subject=f"transfer:{transfer.id}",
                 rollout=work.run_id, source_tenant=work.source_slug, publisher=pin.key_id,
                 version=decision.version)
    row.status, row.applied_version = "applied", decision.version


def _record_failure(app: Provisioner, target_id: int, status: str, reason: str) -> None:
    with app.transaction() as ctx:
        row = ctx.session.get(RolloutTarget, target_id)
        assert row is not None
        if row.status == "pending":
            row.status, row.reason, row.updated_at = status, reason[:2000], ctx.clock.now()


def process(app: Provisioner, login: str, run_id: int, *, keys: Mapping[str, str] | None = None,
            on_progress: Callable[[RolloutTarget], None] | None = None) -> RolloutRun:
    """Process the run's pending targets, each in its own transaction; then finish the run."""
    keys = dict(keys or {})
    with app.transaction() as ctx:
        run = ctx.session.get(RolloutRun, run_id)
        if run is None:
            raise NotFound(f"no rollout {run_id}")
        source = ctx.session.get(Tenant, run.tenant_id)
        assert source is not None
        actor = resolve(ctx, login, source.slug)
        require_admin(actor, "roll out configurations")
        require_can_send(source)
        bundle = _verify_source_bundle(ctx, source, run.envelope)
        work = _Work(run.id, login, source.id, source.slug, bundle.key_id, run.envelope, bundle)
        pending = list(ctx.session.scalars(
            select(RolloutTarget.id).where(RolloutTarget.run_id == run_id,
                                           RolloutTarget.status == "pending")
            .order_by(RolloutTarget.position)))
    for target_id in pending:
        try:
            with app.transaction() as ctx:
                row = ctx.session.scalar(
                    select(RolloutTarget).where(RolloutTarget.id == target_id,
                                                RolloutTarget.status == "pending")
                    .with_for_update())
                if row is None:  # processed meanwhile by a concurrent resume
                    continue
                _deliver(ctx, work, row, keys)
                row.updated_at = ctx.clock.now()
                row.reason = None
        except ProvisionerError as exc:
            _record_failure(app, target_id, "rejected", exc.diagnostics())
        except Exception as exc:  # one target failing must never stop the others
            _record_failure(app, target_id, "failed", f"{type(exc).__name__}: {exc}")
        if on_progress is not None:
            with app.transaction() as ctx:
                done = ctx.session.get(RolloutTarget, target_id)
                assert done is not None
                on_progress(done)
    return _finish(app, run_id)


def _finish(app: Provisioner, run_id: int) -> RolloutRun:
    with app.transaction() as ctx:
        run = ctx.session.get(RolloutRun, run_id)
        assert run is not None
        counts = _counts(ctx, run_id)
        if counts.get("pending", 0) == 0 and run.status != "finished":
            run.status, run.finished_at = "finished", ctx.clock.now()
            audit.record(ctx, tenant_id=run.tenant_id, actor=run.created_by,
                         action="rollout:finished", subject=f"rollout:{run.id}", counts=counts)
        return run


def _counts(ctx: Context, run_id: int) -> dict[str, int]:
    rows = ctx.session.execute(
        select(RolloutTarget.status, func.count()).where(RolloutTarget.run_id == run_id)
        .group_by(RolloutTarget.status)).all()
    return {status: int(n) for status, n in rows}


def get(ctx: Context, actor: Actor, run_id: int) -> RolloutRun:
    """The run, for an admin of its source tenant (others get NotFound)."""
    run = ctx.session.get(RolloutRun, run_id)
    if run is None or run.tenant_id != actor.tenant_id:
        raise NotFound(f"no rollout {run_id} in tenant {actor.tenant_slug!r}")
    require_admin(actor, "see rollouts")
    return run


def targets(ctx: Context, actor: Actor, run_id: int) -> list[RolloutTarget]:
    run = get(ctx, actor, run_id)
    return list(ctx.session.scalars(select(RolloutTarget).where(RolloutTarget.run_id == run.id)
                                    .order_by(RolloutTarget.position)))


def pending_count(ctx: Context, run_id: int) -> int:
    return _counts(ctx, run_id).get("pending", 0)


def summary(ctx: Context, actor: Actor, run_id: int) -> dict[str, Any]:
    run = get(ctx, actor, run_id)
    rows = targets(ctx, actor, run_id)
    return {
        "run": run.id, "status": run.status, "bundle_id": run.bundle_id,
        "counts": _counts(ctx, run_id),
        "targets": [{"number": t.position, "tenant": t.target_slug, "status": t.status,
                     "via": t.via, "transfer": t.transfer_id, "version": t.applied_version,
                     "reason": t.reason} for t in rows],
    }
