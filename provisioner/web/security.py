"""Who is calling: sessions (bearer token or cookie), CSRF tokens and rate limits.

The session itself is the service layer's (:mod:`provisioner.services.provisioning.auth`):
a random token, stored hashed with an expiry. The API takes it as
``Authorization: Bearer TOKEN``; the console keeps it in a cookie that is
``Secure``, ``HttpOnly``, ``SameSite=Lax`` and expires with the session.

    with acting(app, token, "acme") as (ctx, actor):   # one transaction
        ...

Console forms carry a CSRF token derived from the session token (an attacker
who cannot read the HttpOnly cookie cannot compute it); the login form, which
has no session yet, carries an HMAC of a random pre-session id kept in a
cookie, under a key derived from the master key (:func:`login_csrf_token`): a
token planted in the cookie by a sibling subdomain is useless without the key.

Failed logins are throttled per (login id, client address) with growing
delays, counted in the database (:mod:`provisioner.services.provisioning.auth`),
so a restart does not reset them and a guesser elsewhere cannot lock the real
user out. The client address is the peer's, or, when the peer is a configured
trusted proxy, the last untrusted address of ``X-Forwarded-For``
(:func:`client_address`). Failed copy-key redemptions are limited here per
client address in this process's memory, and per tenant in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from provisioner import logs
from provisioner.clock import Clock, format_instant
from provisioner.errors import PermissionDenied, RateLimited, Unauthenticated
from provisioner.numbers import parse_whole_number
from provisioner.services import actors
from provisioner.services.actors import Actor
from provisioner.services.context import Context, Provisioner
from provisioner.services.provisioning import auth

SESSION_COOKIE = "provisioner_session"
LOGIN_CSRF_COOKIE = "provisioner_login_csrf"
LANG_COOKIE = "provisioner_lang"


@dataclass
class Settings:
    """What a deployment may tune (``provisioner serve`` options)."""

    secure_cookies: bool = True
    #: addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed
    trusted_proxies: tuple[str, ...] = ()
    #: failed copy-key redemptions (send / receive) allowed per client address in ``window``
    redeem_failures: int = 10
    window: timedelta = timedelta(minutes=15)
    #: /metrics answers only with ``Authorization: Bearer <metrics_token>`` (404 when unset)
    metrics_token: str | None = None


@dataclass
class RateLimiter:
    """Failures per key in a sliding window (thread-safe; routes run in a thread pool)."""

    clock: Clock
    window: timedelta
    _hits: dict[str, deque[datetime]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def check(self, key: str, limit: int, what: str) -> None:
        """Raise RateLimited when ``key`` already has ``limit`` failures in the window."""
        now = self.clock.now()
        with self._lock:
            hits = self._recent(key, now)
            if len(hits) >= limit:
                retry = hits[0] + self.window
                raise RateLimited(
                    f"too many failed {what} ({len(hits)} in "
                    f"{int(self.window.total_seconds() // 60)} minutes)",
                    hint=f"try again after {format_instant(retry)}",
                    retry_after=max(1, int((retry - now).total_seconds())),
                )

    def fail(self, key: str) -> None:
        now = self.clock.now()
        with self._lock:
            self._recent(key, now).append(now)
            if len(self._hits) > 100_000:  # bounded memory under a flood of distinct keys
                for stale in [k for k, v in self._hits.items() if not v]:
                    del self._hits[stale]


def token_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def session_actor(ctx: Context, token: str | None) -> Actor:
    """The session's user in its selected tenant; no or an ended session is 401."""
    if not token:
        raise Unauthenticated(
            "you are not logged in",
            hint="log in: POST /api/login, then send 'Authorization: Bearer TOKEN'",
        )
    try:
        actor = auth.session_actor(ctx, token)
    except PermissionDenied as exc:
        raise Unauthenticated(exc.message, hint=exc.hint or "log in again") from None
    logs.note(tenant=actor.tenant_slug, user=actor.login)
    return actor


def in_tenant(ctx: Context, actor: Actor, ref: str) -> Actor:
    """The session's user acting in tenant ``ref`` (slug, or number in their list).

    A tenant the user is not a member of is refused (403) whether it exists or not.
    """
    if ref in (actor.tenant_slug, "current"):
        return actor
    if parse_whole_number(ref) is not None:
        ref = auth.pick(auth.tenants_for(ctx, actor.user_id), ref).slug
    logs.note(tenant=ref)
    return actors.resolve(ctx, actor.login, ref)


@contextmanager
def acting(
    app: Provisioner,
    token: str | None,
    tenant: str | None = None,
    *,
    read_only: bool = False,
) -> Iterator[tuple[Context, Actor]]:
    """One transaction, with the acting user (in ``tenant``, else the selected one).

    ``read_only``: the route only reads (search); see ``Provisioner.transaction``.
    """
    with app.transaction(read_only=read_only) as ctx:
        actor = session_actor(ctx, token)
        if tenant is not None:
            actor = in_tenant(ctx, actor, tenant)
        yield ctx, actor


def csrf_token(session_token: str) -> str:
    """The console's CSRF token for a session (stable for the session's lifetime)."""
    return hashlib.sha256(b"provisioner-csrf|" + session_token.encode()).hexdigest()[:32]


def csrf_ok(session_token: str | None, submitted: str | None) -> bool:
    if not session_token or not submitted:
        return False
    return hmac.compare_digest(csrf_token(session_token), submitted)


def new_login_csrf() -> str:
    """A new pre-session id (the login form's cookie)."""
    return secrets.token_urlsafe(24)


def login_csrf_token(key: bytes, pre_session: str) -> str:
    """The login form's CSRF token: an HMAC of the pre-session id (``key``: derived from the
    master key, ``MasterKey.derive("login-csrf")``)."""
    return hmac.new(
        key, b"provisioner-login-csrf|" + pre_session.encode(), hashlib.sha256
    ).hexdigest()


def login_csrf_ok(key: bytes, pre_session: str | None, submitted: str | None) -> bool:
    if not pre_session or not submitted:
        return False
    return hmac.compare_digest(login_csrf_token(key, pre_session), submitted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the last
    address of ``X-Forwarded-For`` that is not itself a trusted proxy (the ones before it
    were written by the client and prove nothing).

        >>> client_address("10.0.0.1", "203.0.113.9, 10.0.0.2", ("10.0.0.1", "10.0.0.2"))
        '203.0.113.9'
        >>> client_address("198.51.100.7", "203.0.113.9", ("10.0.0.1",))
        '198.51.100.7'
    """
    address = peer or "unknown"
    if address not in trusted or not forwarded_for:
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")][-20:]):
        if hop and hop not in trusted:
            return hop[:100]
    return address


def is_https(
    scheme: str, peer: str | None, forwarded_proto: str | None, trusted: tuple[str, ...]
) -> bool:
    """Whether the client reached us over HTTPS (directly, or through a trusted proxy)."""
    if scheme == "https":
        return True
    return bool(
        peer in trusted
        and forwarded_proto
        and forwarded_proto.split(",")[0].strip().lower() == "https"
    )
