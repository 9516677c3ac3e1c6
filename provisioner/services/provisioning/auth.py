"""Passwords, login, sessions and switching tenant (REQUIREMENTS B, "one login").

    result = auth.login(ctx, "sato", "correct horse")    # tenants in a stable order
    result.tenants[0].slug == result.selected            # the first is preselected
    actor = auth.switch(ctx, result.token, "2")          # by number or slug, no new login
    actor = auth.session_actor(ctx, result.token)        # who and where, for every request

A user has ONE password (Argon2id, memory-hard, on the ``users`` row) whatever
the number of tenants: it is shared by the whole group, so changing it in one
tenant changes it for all. Session tokens are random (256 bits), shown once, and
stored as SHA-256 with an expiry. These functions serve the CLI and the HTTP API.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import String, bindparam, cast, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from provisioner.clock import as_utc, format_instant
from provisioner.db import tenancy
from provisioner.db.models import Membership, Tenant, Throttle, User
from provisioner.db.provisioning_models import LoginSession, TenantGroup
from provisioner.errors import NotFound, PermissionDenied, RateLimited, ValidationFailed
from provisioner.numbers import parse_whole_number
from provisioner.services import audit
from provisioner.services.actors import Actor, get_user
from provisioner.services.transaction import Context

SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD = 8
_HASHER = PasswordHasher()  # Argon2id, RFC 9106 low-memory profile (64 MiB, t=3)
_DUMMY_HASH = _HASHER.hash("timing equaliser for unknown logins")
_BAD_LOGIN = "login id or password is wrong"


@dataclass(frozen=True)
class TenantChoice:
    number: int
    slug: str
    name: str
    role: str
    group: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "number": self.number,
            "slug": self.slug,
            "name": self.name,
            "role": self.role,
            "group": self.group,
        }


@dataclass(frozen=True)
class LoginResult:
    token: str
    login: str
    tenants: list[TenantChoice]
    selected: str
    expires_at: datetime


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(f"the password is too short (at least {MIN_PASSWORD} characters)")


def tenants_for(ctx: Context, user_id: int) -> list[TenantChoice]:
    """The user's active tenants, numbered from 1, in a stable order (tenant creation order)."""
    ctx.present(user_id=user_id)  # the user's own memberships, whatever tenant they are in
    rows = ctx.session.execute(
        select(Tenant, Membership.role, TenantGroup.code)
        .join(Membership, Membership.tenant_id == Tenant.id)
        .outerjoin(TenantGroup, TenantGroup.id == Tenant.group_id)
        .where(
            Membership.user_id == user_id,
            Tenant.status == "active",
            Membership.disabled_at.is_(None),
        )
        .order_by(Tenant.id)
    ).all()
    return [
        TenantChoice(n, t.slug, t.name, role, code)
        for n, (t, role, code) in enumerate(rows, start=1)
    ]


def tenants_for_login(ctx: Context, login_id: str) -> list[TenantChoice]:
    """The numbered list of a login's tenants (empty for an unknown login)."""
    user_id = ctx.session.scalar(select(User.id).where(User.login == login_id))
    return [] if user_id is None else tenants_for(ctx, user_id)


def pick(choices: list[TenantChoice], ref: str) -> TenantChoice:
    """A tenant by its number in the list or by its slug."""
    number = parse_whole_number(ref)
    for choice in choices:
        if (number is not None and choice.number == number) or choice.slug == ref:
            return choice
    listing = ", ".join(f"{c.number}={c.slug}" for c in choices)
    raise NotFound(f"no tenant {ref!r} in your list", hint=f"your tenants: {listing}")


def set_initial_password(ctx: Context, login: str, password: str, *, by: str) -> None:
    """Give a new user a password (operator). A user who already has one keeps it."""
    user = get_user(ctx, login)
    if user.password_hash is not None:
        raise PermissionDenied(
            f"user {login!r} already has a password, shared by all their tenants",
            hint="omit --password-stdin; the user changes it with 'provisioner password'",
        )
    _check_strength(password)
    user.password_hash = _HASHER.hash(password)
    with ctx.operator("write"):  # an operator's event of no tenant
        audit.record(ctx, tenant_id=None, actor=by, action="user:password_set", subject=login)


def replace_password(ctx: Context, user: User, password: str) -> None:
    """Set a user's password (an admin's reset: ``users.reset_password``)."""
    _check_strength(password)
    user.password_hash = _HASHER.hash(password)


def change_password(ctx: Context, actor: Actor, old: str, new: str) -> None:
    """The user changes their own password (in any tenant): it changes for the whole group."""
    user = get_user(ctx, actor.login)
    if not _verify(user, old):
        raise PermissionDenied("the current password is wrong")
    _check_strength(new)
    user.password_hash = _HASHER.hash(new)
    # every other session of the user ends: the password they were opened with is gone
    ctx.present(user_id=user.id)  # the user's own sessions, in every tenant
    ctx.session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=ctx.clock.now())
    )
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="user:password_changed",
        subject=actor.login,
    )


def _verify(user: User | None, password: str) -> bool:
    try:
        if user is None or user.password_hash is None:
            _HASHER.verify(_DUMMY_HASH, password)
            return False
        return _HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def login(ctx: Context, login_id: str, password: str) -> LoginResult:
    """Check the password; open a session in the first tenant of the user's list."""
    user = ctx.session.scalar(select(User).where(User.login == login_id))
    if not _verify(user, password):
        raise PermissionDenied(_BAD_LOGIN)
    assert user is not None
    assert user.password_hash is not None
    choices = tenants_for(ctx, user.id)
    if not choices:
        raise PermissionDenied(
            f"user {login_id!r} has no active tenant", hint="ask an admin to add you to a tenant"
        )
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    token = secrets.token_urlsafe(32)
    now = ctx.clock.now()
    first = choices[0]
    tenant_id = ctx.session.scalar(select(Tenant.id).where(Tenant.slug == first.slug))
    assert tenant_id is not None
    ctx.enter_tenant(tenant_id)  # the session and its event are the selected tenant's rows
    session = LoginSession(
        token_hash=_token_hash(token),
        user_id=user.id,
        tenant_id=tenant_id,
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    ctx.session.add(session)
    audit.record(
        ctx,
        tenant_id=tenant_id,
        actor=login_id,
        action="user:logged_in",
        subject=login_id,
        tenants=len(choices),
    )
    return LoginResult(token, user.login, choices, first.slug, session.expires_at)


def _session(ctx: Context, token: str) -> LoginSession:
    ctx.present(session=_token_hash(token))  # the session, reached by its token's hash
    row = ctx.session.scalar(
        select(LoginSession).where(LoginSession.token_hash == _token_hash(token))
    )
    if row is None or row.revoked_at is not None or ctx.clock.now() >= as_utc(row.expires_at):
        raise PermissionDenied("the session has ended", hint="log in again")
    ctx.present(user_id=row.user_id)  # its user's memberships and sessions
    return row


def _actor(ctx: Context, row: LoginSession) -> Actor:
    found = ctx.session.execute(
        select(User, Tenant, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .join(Tenant, Tenant.id == Membership.tenant_id)
        .where(User.id == row.user_id, Tenant.id == row.tenant_id, Membership.disabled_at.is_(None))
    ).first()
    if found is None or found[1].status != "active":
        raise PermissionDenied(
            "you no longer have access to the selected tenant", hint="switch to another tenant"
        )
    user, tenant, role = found
    return Actor(
        login=user.login, user_id=user.id, tenant_id=tenant.id, tenant_slug=tenant.slug, role=role
    )


_S, _U, _M, _T = (
    LoginSession.__table__.c,
    User.__table__.c,
    Membership.__table__.c,
    Tenant.__table__.c,
)
#: the session, its user and their role in the selected tenant: one prebuilt Core
#: statement (every API request runs it)
_SESSION_ACTOR = (
    select(
        _S.revoked_at,
        _S.expires_at,
        _U.login,
        _S.user_id,
        _S.tenant_id,
        _T.slug,
        _T.status,
        _M.role,
    )
    .select_from(
        LoginSession.__table__.join(User.__table__, _U.id == _S.user_id)
        .outerjoin(
            Membership.__table__,
            (_M.user_id == _S.user_id) & (_M.tenant_id == _S.tenant_id) & _M.disabled_at.is_(None),
        )
        .outerjoin(Tenant.__table__, _T.id == _M.tenant_id)
    )
    .where(_S.token_hash == bindparam("token_hash"))
)
#: PostgreSQL (row-level security): the session is reached by its token's hash (presented
#: as ``provisioner.session`` first), then its user and tenant become the transaction's
#: credentials and scope, so that the memberships of :data:`_SESSION_ACTOR` are visible
#: and the request's later statements need no scope of their own. Separate statements:
#: a setting is read by the statements after the one that sets it.
_PRESENT_SESSION_OWNER = tenancy.settings_from(
    user_id=cast(_S.user_id, String), tenant_id=cast(_S.tenant_id, String)
).where(_S.token_hash == bindparam("token_hash"))  # the session row read once


def session_actor(ctx: Context, token: str) -> Actor:
    """Who and where, for every request: the same checks as ``_session`` + ``_actor``."""
    session = ctx.session
    if session.autoflush:
        session.flush()  # as session.execute would: a session opened in this transaction
    token_hash = _token_hash(token)
    values = {"token_hash": token_hash}
    row: Any
    if ctx.postgres:  # the session presented by its token hash: one round trip
        owner, found = ctx.run_pipelined(
            [_PRESENT_SESSION_OWNER, _SESSION_ACTOR], values, credentials={"session": token_hash}
        )
        ctx.scoped_tenant = int(owner[0].tenant_id) if owner else None
        row = found[0] if found else None
    else:
        row = session.connection().execute(_SESSION_ACTOR, values).first()
    if row is None or row.revoked_at is not None or ctx.clock.now() >= as_utc(row.expires_at):
        raise PermissionDenied("the session has ended", hint="log in again")
    if row.role is None or row.status != "active":
        raise PermissionDenied(
            "you no longer have access to the selected tenant", hint="switch to another tenant"
        )
    return Actor(
        login=row.login,
        user_id=row.user_id,
        tenant_id=row.tenant_id,
        tenant_slug=row.slug,
        role=row.role,
    )


def switch(ctx: Context, token: str, ref: str) -> Actor:
    """Select another of the user's tenants (number or slug) in the same session."""
    row = _session(ctx, token)
    choice = pick(tenants_for(ctx, row.user_id), ref)
    tenant_id = ctx.session.scalar(select(Tenant.id).where(Tenant.slug == choice.slug))
    assert tenant_id is not None
    row.tenant_id = tenant_id
    actor = _actor(ctx, row)
    audit.record(
        ctx,
        tenant_id=tenant_id,
        actor=actor.login,
        action="user:switched_tenant",
        subject=actor.login,
    )
    return actor


def logout(ctx: Context, token: str) -> None:
    row = _session(ctx, token)
    row.revoked_at = ctx.clock.now()


# --------------------------------------------------------------------------- login throttling

#: failures of one login id from one client before the first delay, and of one client
#: address over every login id (password spraying); then the delay doubles from 1 second
FREE_FAILURES = 5
FREE_FAILURES_PER_CLIENT = 50
MAX_DELAY = timedelta(minutes=15)
#: a party whose last failure is older than this starts again from zero
FORGET_AFTER = timedelta(hours=24)


def throttle_keys(login_id: str, client: str) -> tuple[str, str]:
    """The throttled parties of a login attempt: (login id, client) and the client.

    Per (login, client), not per login: a guesser elsewhere slows only themselves,
    never the real user at their own address."""
    return f"login:{login_id.strip().lower()[:150]}|{client[:100]}", f"client:{client[:100]}"


def delay_after(key: str, failures: int) -> timedelta:
    """How long ``key`` waits after its ``failures``-th failure: nothing for the first few,
    then 1 s, 2 s, 4 s ... up to :data:`MAX_DELAY`."""
    free = FREE_FAILURES_PER_CLIENT if key.startswith("client:") else FREE_FAILURES
    if failures < free:
        return timedelta(0)
    return min(MAX_DELAY, timedelta(seconds=2 ** min(failures - free, 20)))


def check_throttle(ctx: Context, keys: tuple[str, ...]) -> None:
    """Raise RateLimited (with ``retry_after`` seconds) while any of ``keys`` must wait."""
    now = ctx.clock.now()
    waits = [
        as_utc(until)
        for until in ctx.session.scalars(
            select(Throttle.blocked_until).where(
                Throttle.key.in_(keys), Throttle.blocked_until.is_not(None)
            )
        )
        if until is not None and as_utc(until) > now
    ]
    if waits:
        until = max(waits)
        error = RateLimited(
            f"too many failed logins: wait until {format_instant(until)}",
            hint="each further failure doubles the wait; a correct password "
            "from your usual address is not slowed by others' failures",
        )
        error.retry_after = max(1, int((until - now).total_seconds()))
        raise error


def record_failure(ctx: Context, keys: tuple[str, ...]) -> None:
    """Count a failed login against each of ``keys`` and set their next allowed time."""
    now = ctx.clock.now()
    dialect = postgresql if ctx.session.get_bind().dialect.name == "postgresql" else sqlite
    for key in sorted(keys):  # one order: concurrent failures never deadlock
        # the row exists (a concurrent first failure inserts nothing twice), then is locked
        ctx.session.execute(
            dialect.insert(Throttle)
            .values(key=key, failures=0, last_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        row = ctx.session.get(Throttle, key, with_for_update=True, populate_existing=True)
        assert row is not None
        if as_utc(row.last_at) < now - FORGET_AFTER:
            row.failures = 0
        row.failures += 1
        row.last_at = now
        delay = delay_after(key, row.failures)
        row.blocked_until = now + delay if delay else None
    ctx.session.flush()


def clear_throttle(ctx: Context, key: str) -> None:
    """A successful login forgets that party's failures."""
    ctx.session.execute(delete(Throttle).where(Throttle.key == key))
