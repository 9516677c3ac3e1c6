"""``provisioner serve``: the HTTP API and the web console (FastAPI on uvicorn).

    provisioner serve --host 127.0.0.1 --port 8000
    provisioner serve --insecure-cookies        # plain http on a non-local address (testing)
    provisioner serve --workers 2               # one worker process per core

uvicorn runs with uvloop and httptools (dependencies) when they are importable.

The database and master key come from ``--db`` / the environment, as for every
command. Put a TLS-terminating proxy in front for anything but localhost: the
console's session cookie is ``Secure``.
"""

from __future__ import annotations

import click

from provisioner.cli.output import State, pass_state


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="worker processes, e.g. one per core (rate limits are counted per "
              "process)")
@click.option("--insecure-cookies", is_flag=True,
              help="session cookies without the Secure flag (plain http, testing only)")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="ADDRESS",
              help="a reverse proxy's address whose X-Forwarded-For (client address for "
              "login throttling) and X-Forwarded-Proto (HTTPS, for HSTS) are believed; "
              "repeatable")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info",
                                                "debug"]), default="info", show_default=True)
@pass_state
def serve(state: State, host: str, port: int, workers: int, insecure_cookies: bool,
          trusted_proxies: tuple[str, ...], log_level: str) -> None:
    """Serve the HTTP API (/api, OpenAPI at /openapi.json) and the web console."""
    import os

    import uvicorn

    state.app()  # fail now, with the usual one-line reason, if the database is not ready
    if state.db_url:
        os.environ["PROVISIONER_DATABASE_URL"] = state.db_url
    if insecure_cookies:
        os.environ["PROVISIONER_INSECURE_COOKIES"] = "1"
    if trusted_proxies:
        os.environ["PROVISIONER_TRUSTED_PROXIES"] = ",".join(trusted_proxies)
    click.echo(f"provisioner console on http://{host}:{port}/ (API: /api, "
               f"OpenAPI: /openapi.json)", err=True)
    uvicorn.run("provisioner.web.server:app_from_environment", factory=True, host=host,
                port=port, workers=workers, log_level=log_level, access_log=log_level == "debug",
                proxy_headers=False)
