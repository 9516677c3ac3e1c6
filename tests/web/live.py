"""A real ``provisioner serve`` stack for tests: the app on uvicorn on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from provisioner.services.context import Provisioner
from provisioner.web import create_app
from provisioner.web.security import Settings


@contextmanager
def serving(app: Provisioner, settings: Settings | None = None) -> Iterator[str]:
    """The base URL of the app served by uvicorn (as ``provisioner serve`` runs it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(app, settings=settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
