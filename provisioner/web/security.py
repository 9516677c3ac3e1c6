"""Who is calling: sessions (bearer token or cookie), CSRF tokens and rate limits.

The session itself is the service layer's (:mod:`provisioner.services.provisioning.auth`):
a random token, stored hashed with an expiry. The API takes it as
``Authorization: Bearer TOKEN``; the console keeps it in a cookie that is
``Secure``, ``HttpOnly``, ``SameSite=Lax`` and expires with the session.

    with acting(app, token, "acme") as (ctx, actor):   # one transaction
        ...

Console forms carry a CSRF token derived from the session token (an attacker
who cannot read the HttpOnly cookie cannot compute it); the login form, which
has no session yet, uses a double-submit cookie.

Rate limits (failed logins, failed copy-key redemptions) are counted here per
client address and per login id, in this process's memory; copy-key failures
are also limited per tenant by the service layer, in the database.
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
from typing import Any

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
    #: failed logins allowed per login id, and per client address, in ``window``
    login_failures: int = 10
    login_failures_per_client: int = 30
    #: failed copy-key redemptions (send / receive) allowed per client address in ``window``
    redeem_failures: int = 10
    window: timedelta = timedelta(minutes=15)


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
                    retry_after=max(1, int((retry - now).total_seconds())))

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
        raise Unauthenticated("you are not logged in",
                              hint="log in: POST /api/login, then send "
                              "'Authorization: Bearer TOKEN'")
    try:
        return auth.session_actor(ctx, token)
    except PermissionDenied as exc:
        raise Unauthenticated(exc.message, hint=exc.hint or "log in again") from None


def in_tenant(ctx: Context, actor: Actor, ref: str) -> Actor:
    """The session's user acting in tenant ``ref`` (slug, or number in their list).

    A tenant the user is not a member of is refused (403) whether it exists or not.
    """
    if ref in (actor.tenant_slug, "current"):
        return actor
    if parse_whole_number(ref) is not None:
        ref = auth.pick(auth.tenants_for(ctx, actor.user_id), ref).slug
    return actors.resolve(ctx, actor.login, ref)


@contextmanager
def acting(app: Provisioner, token: str | None, tenant: str | None = None, *,
           read_only: bool = False,
           log_rows: list[Any] | None = None) -> Iterator[tuple[Context, Actor]]:
    """One transaction, with the acting user (in ``tenant``, else the selected one).

    ``read_only``, ``log_rows``: the route only reads (lookup, search); see
    ``Provisioner.transaction``.
    """
    with app.transaction(read_only=read_only, log_rows=log_rows) as ctx:
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
    return secrets.token_urlsafe(24)
