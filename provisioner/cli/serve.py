"""``provisioner serve``: the HTTP API and the web console (FastAPI on uvicorn).

    provisioner serve --host 127.0.0.1 --port 8000
    provisioner serve --insecure-cookies        # plain http on a non-local address (testing)
    provisioner serve --workers 2               # one worker process per core
    provisioner serve --workers 4 --max-db-connections 40 --log-format json \\
        --metrics-token "$TOKEN" --graceful-timeout 30

uvicorn runs with uvloop and httptools (dependencies) when they are importable.

The database and master key come from ``--db`` / the environment, as for every
command. Put a TLS-terminating proxy in front for anything but localhost: the
console's session cookie is ``Secure``.

Connections (PostgreSQL): ``serve`` reads the server's ``max_connections`` at
start and gives each worker a pool of ``--max-db-connections / --workers``
(default: half the server's usable slots, at most 10 per worker); it refuses to
start when that cannot fit. A request waits up to ``--pool-timeout`` seconds for
a pooled connection (then 503 ``database_busy``). The workers get their settings
from the environment (``PROVISIONER_POOL_SIZE``, ``PROVISIONER_POOL_TIMEOUT``,
``PROVISIONER_METRICS_TOKEN``; see :mod:`provisioner.web.server`).
"""

from __future__ import annotations

import click

from provisioner.cli.output import State, pass_state


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="worker processes, e.g. one per core (rate limits are counted per process)",
)
@click.option(
    "--insecure-cookies",
    is_flag=True,
    help="session cookies without the Secure flag (plain http, testing only)",
)
@click.option(
    "--scheduler-seconds",
    type=click.FloatRange(0, 86400),
    default=300,
    show_default=True,
    help="run the workflow date scheduler this often in each worker (0: off; each "
    "due firing happens once whatever runs it)",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="ADDRESS",
    help="a reverse proxy's address whose X-Forwarded-For (client address for "
    "login throttling) and X-Forwarded-Proto (HTTPS, for HSTS) are believed; "
    "repeatable",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line (for a log collector)",
)
@click.option(
    "--max-db-connections",
    type=click.IntRange(1, 100_000),
    metavar="N",
    envvar="PROVISIONER_MAX_DB_CONNECTIONS",
    help="PostgreSQL connections all workers together may hold (default: half "
    "of the server's max_connections less its reserved slots, at most 10 per "
    "worker)",
)
@click.option(
    "--pool-timeout",
    type=click.FloatRange(0.1, 600),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="how long a request waits for a database connection before 503",
)
@click.option(
    "--graceful-timeout",
    type=click.FloatRange(0, 86_400),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="on SIGTERM, how long in-flight requests may run before they are cut "
    "(a cut request's transaction is rolled back)",
)
@click.option(
    "--metrics-token",
    metavar="TOKEN",
    envvar="PROVISIONER_METRICS_TOKEN",
    help="serve /metrics to callers sending 'Authorization: Bearer TOKEN' "
    "(without it /metrics is off)",
)
@pass_state
def serve(
    state: State,
    host: str,
    port: int,
    workers: int,
    insecure_cookies: bool,
    scheduler_seconds: float,
    trusted_proxies: tuple[str, ...],
    log_level: str,
    log_format: str,
    max_db_connections: int | None,
    pool_timeout: float,
    graceful_timeout: float,
    metrics_token: str | None,
) -> None:
    """Serve the HTTP API (/api, OpenAPI at /openapi.json) and the web console."""
    import os
    import shutil
    import tempfile

    import uvicorn

    from provisioner import logs
    from provisioner.db import engine as engines

    app = state.app()  # fail now, with the usual one-line reason, if the database is not ready
    limits = None
    try:
        if app.engine.dialect.name == "postgresql":
            limits = engines.server_connection_limits(app.engine)
    finally:
        app.engine.dispose()  # the workers open their own
    budget = engines.plan_budget(workers, max_db_connections, limits)
    if state.db_url:
        os.environ["PROVISIONER_DATABASE_URL"] = state.db_url
    if insecure_cookies:
        os.environ["PROVISIONER_INSECURE_COOKIES"] = "1"
    os.environ["PROVISIONER_SCHEDULER_SECONDS"] = str(scheduler_seconds)
    os.environ["PROVISIONER_POOL_SIZE"] = str(budget.per_worker)
    os.environ["PROVISIONER_POOL_TIMEOUT"] = str(pool_timeout)
    if metrics_token:
        os.environ["PROVISIONER_METRICS_TOKEN"] = metrics_token
    metrics_dir = None
    if workers > 1:  # the workers add up their samples in files here (prometheus-client)
        metrics_dir = tempfile.mkdtemp(prefix="provisioner-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if limits is not None:
        click.echo(f"connections: {budget.describe()}", err=True)
    if trusted_proxies:
        os.environ["PROVISIONER_TRUSTED_PROXIES"] = ",".join(trusted_proxies)
    click.echo(
        f"provisioner console on http://{host}:{port}/ (API: /api, OpenAPI: /openapi.json)",
        err=True,
    )
    try:
        uvicorn.run(
            "provisioner.web.server:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=logs.log_config(log_format, log_level),
            access_log=log_level == "debug",
            proxy_headers=False,
            timeout_graceful_shutdown=int(graceful_timeout) if graceful_timeout else None,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
