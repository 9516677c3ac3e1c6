"""The HTTP application: the JSON API under ``/api`` and the console, over one service layer.

    from provisioner.web import create_app
    app = create_app(Provisioner.open())          # an ASGI app for uvicorn

Errors are mapped once, here, from the :class:`ProvisionerError` hierarchy:
the status is the error class's ``http_status`` and the body is
``{"error": {"code": ..., "message": ..., "hint": ..., "problems": [...],
"request_id": ...}}`` (the same object ``provisioner --json`` prints, plus the
request id). Console pages show the same message in a page instead, and send an
ended session to the login page. Database failures are typed
(:mod:`provisioner.db.failures`): 503 with ``Retry-After`` where waiting helps.

Every request has an id (``X-Request-ID`` when the client sends a sane one, else
a new one), returned in that header; every log line written while it runs
carries it, with the route, tenant and user (:mod:`provisioner.logs`). Failures
are logged with the exception and its causes.

``/healthz``: the process answers. ``/readyz``: the database answers and its
schema is at this release's head (503 otherwise); on SQLite it warns when the
disk's free space is below :data:`SQLITE_HEADROOM`. ``/metrics``: Prometheus
text, only with the ``metrics_token`` setting (``Authorization: Bearer``).

A benchmark aid, never on by default: ``create_app(..., bench_body=b"...")``
(``provisioner serve`` with ``PROVISIONER_BENCH_ROUTES=1``) adds
:data:`BENCH_BARE_PATH`, a route through the same middleware, routing and
parameters (tenant, bearer token) as the API's that does no database work and
answers the given JSON bytes, held in memory: what a request costs before the
service layer (``bench/bench_http.py`` compares the lookup, search and update
against it).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

import fastapi_offline
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import RedirectResponse, Response
from fastapi_offline import FastAPIOffline
from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner import __version__, metrics
from provisioner.db import failures, migrate
from provisioner.errors import DatabaseError, ProvisionerError, RateLimited, Unauthenticated
from provisioner.logs import CURRENT, RequestInfo, describe, fields
from provisioner.services.context import Provisioner
from provisioner.web import api, api_workflows, console, console_crm
from provisioner.web.responses import JSONBody
from provisioner.web.scheduler import DueScheduler
from provisioner.web.security import SESSION_COOKIE, RateLimiter, Settings, is_https

log = logging.getLogger("provisioner.web")

#: where the API documentation pages' packaged assets are served
DOCS_ASSETS = "/static-offline-docs"
#: ReDoc's script, with its footer logo taken from here rather than from its vendor's host
REDOC_JS = "/redoc-assets/redoc.standalone.js"
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def _redoc_script() -> bytes:
    script = (Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js").read_bytes()
    return script.replace(_REDOC_LOGO, f"{DOCS_ASSETS}/favicon.png".encode())


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}


#: the benchmark route (only with ``bench_body``; see the module's text)
BENCH_BARE_PATH = "/api/tenants/{tenant}/bench-bare"

#: SQLite: free disk space below this makes /readyz warn (see docs/operations.md)
SQLITE_HEADROOM = 256 * 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _is_api(request: Request) -> bool:
    path = request.url.path
    return path.startswith(("/api", DOCS_ASSETS, REDOC_JS)) or path in (
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/healthz",
        "/readyz",
        "/metrics",
    )


def request_info(request: Request) -> RequestInfo | None:
    info: RequestInfo | None = request.scope.get("provisioner.request")
    return info


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return "/static" if str(scope.get("path", "")).startswith("/static/") else "unmatched"


class Observe:
    """Request id, request fields for the logs, and the request metrics."""

    def __init__(self, app: ASGIApp, provisioner: Provisioner) -> None:
        self.app = app
        self.checkedout = getattr(provisioner.engine.pool, "checkedout", None)
        self.in_use = -1
        self.series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", []) if k == b"x-request-id"), b"")
        try:
            request_id = given.decode("ascii")
        except UnicodeDecodeError:
            request_id = ""
        if not _REQUEST_ID.match(request_id):
            request_id = os.urandom(16).hex()
        info = RequestInfo(request_id, scope["method"], scope["path"])
        scope["provisioner.request"] = info
        CURRENT.set(info)
        started = time.perf_counter()
        status = 500

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id.encode("ascii")))
                    message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            route = info.route = _route_template(scope)
            key = (route, info.method, status)
            series = self.series.get(key)
            if series is None:  # labels() costs microseconds: each series is looked up once
                series = self.series[key] = (
                    metrics.http_requests.labels(route, info.method, str(status)),
                    metrics.http_latency.labels(route, info.method),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - started)
            if self.checkedout is not None:
                in_use = self.checkedout()
                if in_use != self.in_use:
                    self.in_use = in_use
                    metrics.pool_in_use.set(in_use)


def _problems(exc: RequestValidationError) -> list[str]:
    out = []
    for err in exc.errors()[:50]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        out.append(f"{where}: {err.get('msg', 'invalid')}")
    return out


class SecurityHeaders:
    """Headers every response carries; console pages are never cached (a key is shown once)."""

    def __init__(self, app: ASGIApp, trusted_proxies: tuple[str, ...] = ()) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        peer = scope["client"][0] if scope.get("client") else None
        proto = dict(scope.get("headers") or []).get(b"x-forwarded-proto", b"").decode("latin-1")
        https = is_https(scope.get("scheme", "http"), peer, proto, self.trusted_proxies)

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"no-store"),
                ]
                if https:  # browsers honour it over HTTPS only (RFC 6797)
                    headers.append(
                        (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
                    )
                if scope["path"].startswith(("/docs", "/redoc")):
                    # Swagger UI and ReDoc start with an inline script; ReDoc's footer logo
                    # would come from its vendor's host: only this host may serve anything
                    headers.append(
                        (
                            b"content-security-policy",
                            b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
                            b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                            b"worker-src 'self' blob:; frame-ancestors 'none'; "
                            b"base-uri 'none'",
                        )
                    )
                elif not scope["path"].startswith(("/api", DOCS_ASSETS, REDOC_JS)):
                    headers.append(
                        (
                            b"content-security-policy",
                            b"default-src 'self'; frame-ancestors 'none'; "
                            b"form-action 'self'; base-uri 'none'",
                        )
                    )
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    provisioner: Provisioner = app.state.provisioner
    if provisioner.engine.dialect.name == "sqlite":
        # SQLite runs one writing transaction at a time (they begin IMMEDIATE): requests
        # wait in the thread pool's queue rather than in SQLite's sleeping busy handler.
        # Phone lookups do not use the pool (read-only, on the event loop).
        to_thread.current_default_thread_limiter().total_tokens = 1
    pool = provisioner.engine.pool
    size, overflow = getattr(pool, "size", None), getattr(pool, "_max_overflow", 0)
    if callable(size):
        metrics.pool_capacity.set(size() + max(0, overflow))
    interval = app.state.scheduler_seconds
    scheduler = DueScheduler(provisioner, interval) if interval else None
    if scheduler is not None:
        scheduler.start()
    try:
        yield
    finally:
        if scheduler is not None:
            scheduler.stop()
        metrics.process_exited(os.getpid())


def create_app(  # noqa: C901
    provisioner: Provisioner,
    *,
    settings: Settings | None = None,
    scheduler_seconds: float | None = None,
    bench_body: bytes | None = None,
) -> FastAPI:
    """The API and console; ``scheduler_seconds``: run the date scheduler in this
    process that often (``provisioner serve`` does; None: not here); ``bench_body``:
    add the benchmark route answering these bytes (None, the default: no such route)."""
    settings = settings or Settings()
    # /docs (Swagger UI) and /redoc load their scripts, styles and icon from the assets
    # packaged in fastapi-offline, served here under DOCS_ASSETS: no outside host.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # no badge from the validator's host
        lifespan=_lifespan,
        title="provisioner",
        version=__version__,
        description="Configuration copy and tenant provisioning for multi-tenant CRM "
        "products: copy keys, signed bundles, review and apply; CRM records, search, "
        "CTI lookup, CSV; billing. Log in with POST /api/login and send the token as "
        '\'Authorization: Bearer TOKEN\'. Errors: {"error": {"code", "message", '
        '"hint"}}.',
        default_response_class=JSONBody,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.provisioner = provisioner
    app.state.scheduler_seconds = scheduler_seconds
    app.state.settings = settings
    app.state.limiter = RateLimiter(provisioner.clock, settings.window)

    def error(
        request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Response:
        metrics.errors.labels(str(body.get("code", "error"))).inc()
        info = request_info(request)
        if info is not None:
            body = body | {"request_id": info.request_id}
            headers = (headers or {}) | {"X-Request-ID": info.request_id}
        if not _is_api(request):
            return console.error_page(request, status, body, headers)
        return JSONBody({"error": body}, status_code=status, headers=headers)

    @app.exception_handler(ProvisionerError)
    def provisioner_error(request: Request, exc: ProvisionerError) -> Response:
        if isinstance(exc, Unauthenticated) and not _is_api(request):
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        headers = None
        body = exc.to_dict()
        if isinstance(exc, RateLimited):
            retry = exc.retry_after or int(settings.window.total_seconds())
            headers = {"Retry-After": str(retry)}
            body["retry_after"] = retry
        elif exc.http_status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, DatabaseError) and exc.retry_after:
            headers = {"Retry-After": str(exc.retry_after)}
        if exc.http_status >= 500:
            _log_failure(request, exc.code, exc)
        return error(request, exc.http_status, body, headers)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if refusal := api.session_refusal(request):  # 401 comes before input checks
            return provisioner_error(request, refusal)
        return error(
            request,
            422,
            {
                "code": "validation_failed",
                "message": "the request is not valid",
                "problems": _problems(exc),
            },
        )

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Response:
        if (
            exc.status_code not in (405, 404)
            and exc.status_code < 500
            and (refusal := api.session_refusal(request))
        ):
            return provisioner_error(request, refusal)
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405 and (allow := api.allowed_methods(request)):
            headers["Allow"] = ", ".join(allow)  # every method of the path, not one route's
        return error(request, exc.status_code, {"code": code, "message": message}, headers or None)

    @app.exception_handler(DBAPIError)
    def database_error(request: Request, exc: DBAPIError) -> Response:
        sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
        first = (str(exc.orig).strip().splitlines() or [""])[0]
        if sqlstate.startswith("22") or isinstance(exc, DataError) or "NUL" in first:
            # a data exception: a value the database cannot store
            return error(
                request,
                422,
                {
                    "code": "validation_failed",
                    "message": f"a value cannot be stored: {first}",
                    "hint": "remove NUL characters and keep texts within their documented length",
                },
            )
        if sqlstate.startswith("23") or isinstance(exc, IntegrityError):
            # an integrity error: a concurrent change got there first
            return error(
                request,
                409,
                {
                    "code": "conflict",
                    "message": "the change conflicts with another one",
                    "hint": "reload and try again",
                },
            )
        return database_failure(request, exc)

    @app.exception_handler(PoolTimeout)
    def database_failure(request: Request, exc: Exception) -> Response:
        typed = failures.classify(exc)
        _log_failure(request, typed.code, exc)
        headers = {"Retry-After": str(typed.retry_after)} if typed.retry_after else None
        return error(request, typed.http_status, typed.to_dict(), headers)

    @app.exception_handler(Exception)
    def internal_error(request: Request, exc: Exception) -> Response:
        _log_failure(request, "internal_error", exc)
        return error(
            request,
            500,
            {
                "code": "internal_error",
                "message": f"internal error ({type(exc).__name__})",
                "hint": "please report it",
            },
        )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """The process is alive (it does not ask the database: see /readyz)."""
        return {"status": "ok", "version": __version__}

    schema_heads = migrate.heads()

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        """The database answers and its schema is this release's; 503 otherwise."""
        body: dict[str, Any] = {"status": "ok", "version": __version__}
        try:
            with provisioner.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current = migrate.current(provisioner.engine)
        except (DBAPIError, PoolTimeout) as exc:
            typed = failures.classify(exc)
            log.warning("not ready: %s: %s", typed.code, describe(exc))
            return JSONBody(
                {"status": "unavailable", "database": typed.to_dict()},
                status_code=503,
                headers={"Retry-After": str(typed.retry_after or 5)},
            )
        body["schema"] = ", ".join(sorted(current)) or None
        if current != schema_heads:
            return JSONBody(
                body
                | {
                    "status": "unavailable",
                    "message": f"the schema is at {body['schema'] or 'nothing'}, this "
                    f"release needs {', '.join(sorted(schema_heads))}",
                    "hint": "run 'provisioner init'",
                },
                status_code=503,
            )
        warnings = _disk_warnings(provisioner)
        if warnings:
            body["warnings"] = warnings
        return JSONBody(body)

    @app.get("/metrics", include_in_schema=False)
    def metrics_page(request: Request) -> Response:
        """Prometheus text, for a caller with the metrics token (404 without the setting)."""
        if not settings.metrics_token:
            raise HTTPException(404, "not found")
        scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), settings.metrics_token.encode()
        ):
            raise HTTPException(
                401, "the metrics need the metrics token", headers={"WWW-Authenticate": "Bearer"}
            )
        return Response(
            metrics.render(metrics.database_collector(lambda: database_figures(provisioner))),
            media_type=metrics.CONTENT_TYPE_LATEST,
        )

    if bench_body is not None:
        _add_bench_route(app, bench_body)
    app.include_router(api.router)
    app.include_router(api_workflows.router)
    api.document(app)
    app.include_router(console_crm.router)  # first: /customers/new is not an id
    app.include_router(console.router)
    # The documentation's routes go after the API's and the console's (a request tries the
    # routes in order), the assets FastAPIOffline mounted first included.
    app.router.routes.sort(key=lambda r: getattr(r, "name", "") == "static-offline-docs")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> Response:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="provisioner - ReDoc",
            redoc_js_url=REDOC_JS,
            with_google_fonts=False,
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get(REDOC_JS, include_in_schema=False)
    def redoc_script() -> Response:
        return Response(_redoc_script(), media_type="text/javascript")

    app.mount("/static", StaticFiles(packages=[("provisioner.web", "static")]), name="static")
    app.add_middleware(SecurityHeaders, trusted_proxies=settings.trusted_proxies)
    app.add_middleware(Observe, provisioner=provisioner)
    return app


def _add_bench_route(app: FastAPI, body: bytes) -> None:
    """:data:`BENCH_BARE_PATH`: the API's parameters (tenant, bearer token) parsed, no
    session check, no database: ``body`` as it is."""

    @app.get(BENCH_BARE_PATH, include_in_schema=False)
    async def bench_bare(tenant: api.TenantRef, app: api.App, tok: api.Token) -> Response:
        return Response(body, media_type="application/json")


def _log_failure(request: Request, code: str, exc: BaseException) -> None:
    """One error line: what failed, the exception and its causes, the traceback.

    The exception is passed explicitly: the handlers run in a worker thread, where
    ``log.exception`` would find no current exception.
    """
    info = request_info(request)
    extra: dict[str, Any] = {"code": code}
    if info is not None:
        info.route = info.route or _route_template(request.scope)
        tenant = request.path_params.get("tenant")
        if info.tenant is None and isinstance(tenant, str):
            info.tenant = tenant
        extra |= fields(info)
    log.error(
        "%s on %s %s: %s",
        code,
        request.method,
        request.url.path,
        describe(exc),
        exc_info=exc,
        extra=extra,
    )


def _disk_warnings(provisioner: Provisioner) -> list[str]:
    url = provisioner.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return []
    try:
        free = shutil.disk_usage(Path(url.database).parent).free
    except OSError:
        return []
    if free >= SQLITE_HEADROOM:
        return []
    return [
        f"only {free // (1024 * 1024)} MiB free on the SQLite database's disk; keep at "
        f"least {SQLITE_HEADROOM // (1024 * 1024)} MiB free (docs/operations.md), or "
        "writes will fail with storage_full"
    ]


def database_figures(provisioner: Provisioner) -> dict[str, dict[str, int]]:
    """Transfers by status and rollout targets by state, for /metrics."""
    out: dict[str, dict[str, int]] = {}
    with provisioner.engine.connect() as conn:
        for key, sql in (
            ("transfers", "SELECT status, count(*) FROM transfers GROUP BY status"),
            ("rollout_targets", "SELECT status, count(*) FROM rollout_targets GROUP BY status"),
        ):
            out[key] = {str(k): int(n) for k, n in conn.execute(text(sql))}
    return out
