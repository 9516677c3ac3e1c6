"""Server logs that say why: the request they belong to, and the exception with its causes.

Every record logged while a request is handled carries ``request_id``, ``method``,
``route`` (the route's template, e.g. ``/api/tenants/{tenant}/records``),
``tenant`` and ``user`` (known once the session is resolved), from
:data:`CURRENT`, which the HTTP middleware sets per request. The routes run in
worker threads: the thread sees the same :class:`RequestInfo` object (context
variables are copied into the thread; the object is shared), so what the
thread learns (the user, the tenant) is in the middleware's final log line too.

Two formats, chosen by ``provisioner serve --log-format``:

* ``text`` (default)::

    2026-12-07T12:00:00.123Z ERROR provisioner.web request_id=9f0c... GET /api/... \
tenant=acme user=admin: database_unavailable: OperationalError: connection failed: ...

* ``json``: one object per line, with ``time``, ``level``, ``logger``,
  ``message``, the request fields, and ``exception`` (type, message, cause chain)
  and ``traceback`` when an exception is attached.

Exceptions are passed explicitly (``exc_info=exc``): ``log.exception`` inside an
exception handler that runs in a worker thread finds no current exception and
prints ``NoneType: None``.
"""

from __future__ import annotations

import logging
import time
import traceback
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass
class RequestInfo:
    request_id: str
    method: str = ""
    path: str = ""
    route: str | None = None
    tenant: str | None = None
    user: str | None = None


CURRENT: ContextVar[RequestInfo | None] = ContextVar("provisioner_request", default=None)
_FIELDS = ("request_id", "method", "route", "tenant", "user")


def note(*, tenant: str | None = None, user: str | None = None) -> None:
    """Record who the current request acts as (no-op outside a request)."""
    info = CURRENT.get()
    if info is not None:
        if tenant is not None:
            info.tenant = tenant
        if user is not None:
            info.user = user


def causes(exc: BaseException | None) -> list[dict[str, str]]:
    """The exception and the chain of its causes (``__cause__``, else ``__context__``)."""
    out: list[dict[str, str]] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(out) < 8:
        seen.add(id(exc))
        first = (str(exc).strip().splitlines() or [""])[0]
        out.append({"type": type(exc).__name__, "message": first})
        nxt = (
            exc.__cause__
            if exc.__cause__ is not None
            else (None if exc.__suppress_context__ else exc.__context__)
        )
        exc = nxt
    return out


def describe(exc: BaseException) -> str:
    """``Type: message (caused by Type: message; ...)`` on one line."""
    chain = [f"{c['type']}: {c['message']}" if c["message"] else c["type"] for c in causes(exc)]
    return chain[0] + (f" (caused by {'; '.join(chain[1:])})" if len(chain) > 1 else "")


def fields(info: RequestInfo) -> dict[str, str | None]:
    """The request's fields for a record's ``extra``."""
    return {
        "request_id": info.request_id,
        "method": info.method,
        "route": info.route or info.path,
        "tenant": info.tenant,
        "user": info.user,
    }


class RequestFields(logging.Filter):
    """Puts the current request's fields on every record it sees (a handler filter: it
    runs when the record is emitted, in the thread that logged it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = CURRENT.get()
        values = fields(info) if info is not None else {}
        for name in _FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, values.get(name))
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z"
    )


class TextFormatter(logging.Formatter):
    """One line per record (plus the traceback of an attached exception)."""

    def format(self, record: logging.LogRecord) -> str:
        RequestFields().filter(record)
        parts = [_timestamp(record), record.levelname, record.name]
        request_id = getattr(record, "request_id", None)
        if request_id:
            parts.append(f"request_id={request_id}")
            route = getattr(record, "route", None)
            parts.append(f"{getattr(record, 'method', '') or ''} {route or ''}".strip())
            for name in ("tenant", "user"):
                value = getattr(record, name, None)
                if value:
                    parts.append(f"{name}={value}")
        line = " ".join(parts) + ": " + record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        RequestFields().filter(record)
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        for name in ("status", "duration_ms", "code"):
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            out["exception"] = causes(record.exc_info[1])
            out["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return orjson.dumps(out, default=str).decode("utf-8")


def log_config(fmt: str = "text", level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and provisioner in ``fmt``."""
    formatter = {"()": f"{__name__}.{'JSONFormatter' if fmt == 'json' else 'TextFormatter'}"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": formatter},
        "filters": {"request": {"()": f"{__name__}.RequestFields"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "filters": ["request"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "provisioner": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "psycopg": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }
