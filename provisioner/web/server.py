"""The ASGI application as ``provisioner serve`` (uvicorn, one per worker) builds it."""

from __future__ import annotations

import os

from fastapi import FastAPI

from provisioner.services.context import Provisioner
from provisioner.web.app import create_app
from provisioner.web.security import Settings


def app_from_environment() -> FastAPI:
    """Database and master key from the environment, as for every command."""
    secure = not os.environ.get("PROVISIONER_INSECURE_COOKIES")
    proxies = tuple(p.strip() for p in os.environ.get("PROVISIONER_TRUSTED_PROXIES", "")
                    .split(",") if p.strip())
    return create_app(Provisioner.open(),
                      settings=Settings(secure_cookies=secure, trusted_proxies=proxies))
