"""Response classes and the one error body of the API.

JSON is rendered with orjson (UTF-8, no ASCII escaping of Japanese). Every error
answer, whatever its status, is :class:`ErrorBody`; a route declares the error
statuses it can answer with :func:`errors`::

    @router.post("/tenants/{tenant}/things", status_code=201, response_model=ThingOut,
                 responses=errors(409))          # + the statuses every tenant route has
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class JSONBody(JSONResponse):
    """A JSON answer (a JSONResponse, so that FastAPI documents the route's response model)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str, option=orjson.OPT_NON_STR_KEYS)


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. key_rejected")
    message: str = Field(description="what is wrong, for a person")
    hint: str | None = Field(default=None, description="how to fix it, when there is a way")
    retry_after: int | None = Field(
        default=None, ge=1, description="429: seconds to wait (also in the Retry-After header)"
    )
    problems: list[str] | None = Field(default=None, description="422: each invalid input")
    request_id: str | None = Field(default=None, description="the request's id in the logs")


class ErrorBody(BaseModel):
    """``{"error": {"code", "message", "hint", ...}}``: every error answer of the API."""

    error: ErrorDetail


#: what each error status means in this API (the descriptions in /openapi.json)
ERROR_STATUSES: dict[int, str] = {
    400: "the request cannot be read (malformed body)",
    401: "not logged in, or the session has ended (unauthenticated)",
    403: "not allowed: permission_denied, key_rejected, transfer_refused",
    404: "no such tenant in your list, or no such object in the tenant (not_found)",
    409: "conflicts with the current state: plan_conflict, data_in_use, already_exists, conflict",
    413: "over a quota or size limit (quota_exceeded)",
    422: "the input is not valid: validation_failed (with problems), bundle_rejected",
    429: "too many failed attempts (rate_limited, with retry_after and Retry-After)",
    503: "the database could not complete the request (database_error)",
}
#: statuses every authenticated route can answer
AUTHENTICATED = (401, 422, 503)
#: ... and every route under /api/tenants/{tenant}
TENANT = (*AUTHENTICATED, 403, 404)


def errors(*statuses: int, base: tuple[int, ...] = TENANT) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: ``base`` and ``statuses``, each with :class:`ErrorBody`."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*base, *statuses}):
        out[status] = {"model": ErrorBody, "description": ERROR_STATUSES[status]}
    return out
