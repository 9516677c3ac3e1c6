"""The HTTP application: the JSON API under ``/api`` and the console, over one service layer.

    from provisioner.web import create_app
    app = create_app(Provisioner.open())          # an ASGI app for uvicorn

Errors are mapped once, here, from the :class:`ProvisionerError` hierarchy:
the status is the error class's ``http_status`` and the body is
``{"error": {"code": ..., "message": ..., "hint": ..., "problems": [...]}}``
(the same object ``provisioner --json`` prints). Console pages show the same
message in a page instead, and send an ended session to the login page.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner import __version__
from provisioner.errors import ProvisionerError, RateLimited, Unauthenticated
from provisioner.services.context import Provisioner
from provisioner.web import api, console
from provisioner.web.responses import JSONBody
from provisioner.web.security import SESSION_COOKIE, RateLimiter, Settings

log = logging.getLogger("provisioner.web")

_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "permission_denied",
               404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
               413: "too_large", 415: "unsupported_media_type", 422: "validation_failed",
               429: "rate_limited"}


def _is_api(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api") or path in ("/openapi.json", "/docs", "/healthz")


def _problems(exc: RequestValidationError) -> list[str]:
    out = []
    for err in exc.errors()[:50]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        out.append(f"{where}: {err.get('msg', 'invalid')}")
    return out


class SecurityHeaders:
    """Headers every response carries; console pages are never cached (a key is shown once)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"no-store"),
                ]
                if not scope["path"].startswith(("/api", "/docs")):
                    headers.append((b"content-security-policy",
                                    b"default-src 'self'; frame-ancestors 'none'; "
                                    b"form-action 'self'; base-uri 'none'"))
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
    yield


def create_app(provisioner: Provisioner, *, settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        lifespan=_lifespan,
        title="provisioner",
        version=__version__,
        description="Configuration copy and tenant provisioning for multi-tenant CRM "
        "products: copy keys, signed bundles, review and apply; CRM records, search, "
        "CTI lookup, CSV; billing. Log in with POST /api/login and send the token as "
        "'Authorization: Bearer TOKEN'. Errors: {\"error\": {\"code\", \"message\", "
        "\"hint\"}}.",
        default_response_class=JSONBody,
        docs_url="/docs", redoc_url=None,
    )
    app.state.provisioner = provisioner
    app.state.settings = settings
    app.state.limiter = RateLimiter(provisioner.clock, settings.window)

    def error(request: Request, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> Response:
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
        return error(request, exc.http_status, body, headers)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if refusal := api.session_refusal(request):  # 401 comes before input checks
            return provisioner_error(request, refusal)
        return error(request, 422, {"code": "validation_failed",
                                    "message": "the request is not valid",
                                    "problems": _problems(exc)})

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code not in (405, 404) and exc.status_code < 500 and (
                refusal := api.session_refusal(request)):
            return provisioner_error(request, refusal)
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405 and (allow := api.allowed_methods(request)):
            headers["Allow"] = ", ".join(allow)  # every method of the path, not one route's
        return error(request, exc.status_code, {"code": code, "message": message},
                     headers or None)

    @app.exception_handler(DBAPIError)
    def database_error(request: Request, exc: DBAPIError) -> Response:
        sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
        first = (str(exc.orig).strip().splitlines() or [""])[0]
        if sqlstate.startswith("22") or isinstance(exc, DataError) or "NUL" in first:
            # a data exception: a value the database cannot store
            return error(request, 422, {
                "code": "validation_failed", "message": f"a value cannot be stored: {first}",
                "hint": "remove NUL characters and keep texts within their documented length"})
        if sqlstate.startswith("23") or isinstance(exc, IntegrityError):
            # an integrity error: a concurrent change got there first
            return error(request, 409, {"code": "conflict",
                                        "message": "the change conflicts with another one",
                                        "hint": "reload and try again"})
        log.exception("database error on %s %s", request.method, request.url.path)
        return error(request, 503, {"code": "database_error",
                                    "message": "the database could not complete the request",
                                    "hint": "try again; if it persists, tell the operator"})

    @app.exception_handler(Exception)
    def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error(request, 500, {"code": "internal_error",
                                    "message": f"internal error ({type(exc).__name__})",
                                    "hint": "please report it"})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(api.router)
    api.document(app)
    app.include_router(console.router)
    app.mount("/static", StaticFiles(packages=[("provisioner.web", "static")]), name="static")
    app.add_middleware(SecurityHeaders)
    return app
