"""The ASGI application as ``provisioner serve`` (uvicorn, one per worker) builds it.

Settings come from the environment ``serve`` prepared: the database
(``PROVISIONER_DATABASE_URL``), the worker's pool (``PROVISIONER_POOL_SIZE``,
no overflow; ``PROVISIONER_POOL_TIMEOUT`` seconds of waiting for a connection),
``PROVISIONER_INSECURE_COOKIES`` and ``PROVISIONER_METRICS_TOKEN``.

Benchmark aid, off unless set: ``PROVISIONER_BENCH_ROUTES=1`` adds the bare
route (:data:`provisioner.web.app.BENCH_BARE_PATH`: no database work), which
answers the bytes of the file ``PROVISIONER_BENCH_BODY`` (else a small JSON
object). Never set it on a served deployment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from provisioner.services.context import Provisioner
from provisioner.web.app import create_app
from provisioner.web.scheduler import DEFAULT_INTERVAL
from provisioner.web.security import Settings


def engine_options() -> dict[str, Any]:
    options: dict[str, Any] = {}
    if os.environ.get("PROVISIONER_POOL_TIMEOUT"):
        options["pool_timeout"] = float(os.environ["PROVISIONER_POOL_TIMEOUT"])
    if os.environ.get("PROVISIONER_POOL_SIZE"):
        options["pool_size"] = int(os.environ["PROVISIONER_POOL_SIZE"])
        options["max_overflow"] = 0
    return options


#: the bare route's answer when ``PROVISIONER_BENCH_BODY`` names no file
BENCH_DEFAULT_BODY = b'{"bench":"bare"}'


def bench_body() -> bytes | None:
    """The bare benchmark route's answer, or None (the default) for no such route."""
    if os.environ.get("PROVISIONER_BENCH_ROUTES", "") in ("", "0"):
        return None
    path = os.environ.get("PROVISIONER_BENCH_BODY")
    return Path(path).read_bytes() if path else BENCH_DEFAULT_BODY


def app_from_environment() -> FastAPI:
    """Database and master key from the environment, as for every command."""
    secure = not os.environ.get("PROVISIONER_INSECURE_COOKIES")
    proxies = tuple(
        p.strip() for p in os.environ.get("PROVISIONER_TRUSTED_PROXIES", "").split(",") if p.strip()
    )
    settings = Settings(
        secure_cookies=secure,
        trusted_proxies=proxies,
        metrics_token=os.environ.get("PROVISIONER_METRICS_TOKEN") or None,
    )
    every = float(os.environ.get("PROVISIONER_SCHEDULER_SECONDS", DEFAULT_INTERVAL))
    return create_app(
        Provisioner.open(**engine_options()),
        settings=settings,
        scheduler_seconds=every or None,
        bench_body=bench_body(),
    )
