"""Web plumbing shared by the JSON API and the console; neither calls the other.

Both are thin layers over the services. What they share sits here: the
application objects a request carries (the :class:`Provisioner`, the settings,
the rate limiter), the client address, the failed-login and failed-redemption
limits, the acting user's transfer lookup and the path parameter types.
Sessions, CSRF tokens and the limiter itself are in
:mod:`provisioner.web.security`, which this module builds on.

    api.py ─┐
            ├─> common.py ─> security.py ─> services
    console ┘
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request

from provisioner.db.models import Transfer
from provisioner.errors import BundleRejected, KeyRejected, NotFound, ProvisionerError, RateLimited
from provisioner.services import transfers
from provisioner.services.actors import Actor
from provisioner.services.context import Context, Provisioner
from provisioner.services.provisioning import auth
from provisioner.web.security import RateLimiter, Settings, client_address

MAX_ID = 2**31 - 1
#: the largest CSV file an upload may be (the API's and the console's imports)
MAX_CSV = 256 * 1024 * 1024
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
Version = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def provisioner(request: Request) -> Provisioner:
    app: Provisioner = request.app.state.provisioner
    return app


def limiter(request: Request) -> RateLimiter:
    lim: RateLimiter = request.app.state.limiter
    return lim


def settings(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def client(request: Request) -> str:
    """The client's address (behind a configured trusted proxy: from X-Forwarded-For)."""
    return client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        settings(request).trusted_proxies,
    )


def login_with_limits(
    app: Provisioner, login_id: str, password: str, address: str
) -> auth.LoginResult:
    """auth.login behind the failed-login throttle: per (login id, client address) and per
    client address, growing delays, counted in the database (``auth.check_throttle``)."""
    keys = auth.throttle_keys(login_id, address)
    with app.transaction() as ctx:
        auth.check_throttle(ctx, keys)
    try:
        with app.transaction() as ctx:
            result = auth.login(ctx, login_id, password)
    except ProvisionerError:
        with app.transaction() as ctx:
            auth.record_failure(ctx, keys)
        raise
    with app.transaction() as ctx:
        auth.clear_throttle(ctx, keys[0])
    return result


def redeeming(request: Request) -> str:
    """Check the client's failed-redemption budget; the key to count a failure on."""
    k = f"redeem-client:{client(request)}"
    limiter(request).check(k, settings(request).redeem_failures, "copy-key redemptions")
    return k


def count_failure(request: Request, k: str, exc: ProvisionerError) -> None:
    if isinstance(exc, KeyRejected | BundleRejected | RateLimited):
        limiter(request).fail(k)


def find_transfer(ctx: Context, actor: Actor, transfer_id: int) -> Transfer:
    """A transfer of the actor's tenant; another tenant's is "not found"."""
    row, _ = transfers.get(ctx, actor.login, transfer_id)
    if row.tenant_id != actor.tenant_id:
        raise NotFound(f"no transfer {transfer_id} in tenant {actor.tenant_slug!r}")
    return row
