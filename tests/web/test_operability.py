"""Operating the server: request ids, logs that say why, typed database failures, health.

Each failure is real: a pool whose only connection is held, a SQLite write lock
held by another connection, a SQLite database at its page limit (SQLite's own
``SQLITE_FULL``), a PostgreSQL URL where nothing listens.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from provisioner import logs
from provisioner.clock import FrozenClock
from provisioner.db.engine import make_engine
from provisioner.security.keystore import MasterKey
from provisioner.services.context import Provisioner
from provisioner.web import create_app
from provisioner.web.security import Settings
from tests.conftest import MASTER_KEY
from tests.web.conftest import Site

UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/provisioner"
CONTACT = {"name": "佐藤 花子", "phone": "03-0000-0001"}


def _client(engine: Engine, clock: FrozenClock, settings: Settings | None = None) -> TestClient:
    app = Provisioner(engine, master_key=MasterKey(MASTER_KEY), clock=clock)
    return TestClient(
        create_app(app, settings=settings),
        base_url="https://testserver",
        raise_server_exceptions=False,
    )


def _create(client: TestClient, token: str, request_id: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if request_id:
        headers["X-Request-ID"] = request_id
    return client.post("/api/tenants/acme/records/contact", json=CONTACT, headers=headers)


def _error_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "provisioner.web" and r.levelno >= 40]


@pytest.fixture
def sqlite_only(db_url: str) -> str:
    if not db_url.startswith("sqlite"):
        pytest.skip("a SQLite mechanism")
    return db_url


# --------------------------------------------------------------------------- request ids


def test_the_request_id_is_taken_from_the_header_and_returned(site: Site) -> None:
    r = site.call(
        "GET",
        "/api/tenants/acme/records/contact/999999",
        "acme-admin",
        headers={"X-Request-ID": "lb-7f3a.42"},
    )
    assert r.status_code == 404
    assert r.headers["X-Request-ID"] == "lb-7f3a.42"
    assert r.json()["error"]["request_id"] == "lb-7f3a.42"


def test_a_request_id_is_made_when_none_or_a_malformed_one_is_sent(site: Site) -> None:
    ok = site.call("GET", "/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", ok.headers["X-Request-ID"])
    bad = site.call(
        "GET",
        "/api/tenants/acme/records/contact/999999",
        "acme-admin",
        headers={"X-Request-ID": "x" * 200},
    )
    made = bad.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert bad.json()["error"]["request_id"] == made
    assert site.call("GET", "/healthz").headers["X-Request-ID"] != made


# --------------------------------------------------------------------------- database failures


def test_an_exhausted_pool_is_a_503_database_busy_logged_with_its_cause(
    site: Site, db_url: str, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=0.3)
    client = _client(engine, clock)
    held = engine.connect()  # the pool's only connection
    try:
        with caplog.at_level(logging.ERROR, logger="provisioner"):
            r = _create(client, site.tokens["acme-admin"], "busy-1")
    finally:
        held.close()
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    error = r.json()["error"]
    assert error["code"] == "database_busy"
    assert error["request_id"] == "busy-1"
    assert "pool" in error["message"]
    assert "max-db-connections" in error["hint"]
    [line] = _error_lines(caplog)
    text = logs.TextFormatter().format(line)
    assert "request_id=busy-1" in text
    assert "POST /api/tenants/{tenant}/records/contact" in text
    assert "database_busy" in text
    assert "TimeoutError" in text
    assert "QueuePool limit" in text
    assert "NoneType: None" not in text
    assert "Traceback" in text
    # and once the connection is back, the same request succeeds
    assert _create(client, site.tokens["acme-admin"]).status_code == 201
    engine.dispose()


def test_a_locked_sqlite_database_is_a_503_database_locked_not_a_configuration_error(
    site: Site,
    sqlite_only: str,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROVISIONER_SQLITE_BUSY_TIMEOUT", "0.2")
    engine = make_engine(sqlite_only)
    client = _client(engine, clock)
    other = sqlite3.connect(make_url(sqlite_only).database or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with caplog.at_level(logging.ERROR, logger="provisioner"):
            r = _create(client, site.tokens["acme-admin"], "locked-1")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    assert r.json()["error"]["code"] == "database_locked"
    [line] = _error_lines(caplog)
    record = json.loads(logs.JSONFormatter().format(line))
    assert record["request_id"] == "locked-1"
    assert record["level"] == "ERROR"
    assert record["code"] == "database_locked"
    # the lock is met at the transaction's first statement, before the session is read:
    # the tenant comes from the path, the user is not known yet
    assert record["tenant"] == "acme"
    assert "user" not in record
    assert record["exception"][0]["type"] == "OperationalError"
    assert record["exception"][0]["message"].endswith("database is locked")
    assert _create(client, site.tokens["acme-admin"]).status_code == 201
    engine.dispose()


def test_a_full_sqlite_database_is_a_503_storage_full_without_retry_after(
    site: Site, sqlite_only: str, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(sqlite_only)

    @event.listens_for(engine, "connect")
    def _no_room(dbapi_conn: Any, _record: Any) -> None:
        # SQLite's own SQLITE_FULL: the file may not grow past its current size
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    client = _client(engine, clock)
    with caplog.at_level(logging.ERROR, logger="provisioner"):
        for _ in range(500):  # the free pages inside the file fill up first
            r = _create(client, site.tokens["acme-admin"], "full-1")
            if r.status_code != 201:
                break
    assert r.status_code == 503
    assert "Retry-After" not in r.headers
    assert r.json()["error"]["code"] == "storage_full"
    assert "disk" in r.json()["error"]["hint"]
    line = _error_lines(caplog)[-1]
    assert line.exc_info
    assert "database or disk is full" in logs.describe(line.exc_info[1])
    text = logs.TextFormatter().format(line)
    assert "request_id=full-1" in text
    assert "tenant=acme user=acme-admin" in text
    engine.dispose()


@pytest.fixture
def unreachable(clock: FrozenClock, env: None) -> Iterator[TestClient]:
    engine = make_engine(UNREACHABLE_PG, pool_timeout=1)
    yield _client(engine, clock)
    engine.dispose()


def test_an_unreachable_postgresql_is_a_503_database_unavailable(
    unreachable: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="provisioner"):
        r = unreachable.get("/api/tenants", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert r.json()["error"]["code"] == "database_unavailable"
    assert "127.0.0.1" not in r.text  # the server's address stays in the log
    [line] = _error_lines(caplog)
    assert "Connection refused" in logs.describe(line.exc_info[1])  # type: ignore[index]


# --------------------------------------------------------------------------- health


def test_healthz_answers_while_the_database_is_down_and_readyz_does_not(
    unreachable: TestClient,
) -> None:
    assert unreachable.get("/healthz").status_code == 200
    r = unreachable.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable"
    assert r.json()["database"]["code"] == "database_unavailable"
    assert r.headers["Retry-After"] == "5"


def test_readyz_is_ok_when_the_schema_is_at_head(site: Site) -> None:
    r = site.call("GET", "/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"
    assert r.json()["schema"]


def test_readyz_is_503_when_the_schema_is_behind(
    db_url: str, clock: FrozenClock, env: None
) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        heads = [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0006_crm_tallies'")
    try:
        r = _client(engine, clock).get("/readyz")
        assert r.status_code == 503
        assert "0006_crm_tallies" in r.json()["message"]
        assert r.json()["hint"] == "run 'provisioner init'"
    finally:
        with engine.begin() as conn:  # the database is shared by the worker's tests
            conn.exec_driver_sql("DELETE FROM alembic_version")
            for head in heads:
                conn.exec_driver_sql(f"INSERT INTO alembic_version (version_num) VALUES ('{head}')")
        engine.dispose()


# --------------------------------------------------------------------------- metrics


def test_metrics_are_not_public_by_default(site: Site) -> None:
    assert site.call("GET", "/metrics").status_code == 404


def test_metrics_need_the_token_and_count_requests_by_route_and_status(
    app: Provisioner, clock: FrozenClock, site: Site
) -> None:
    client = TestClient(
        create_app(app, settings=Settings(metrics_token="s3cret")), base_url="https://testserver"
    )
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    client.get(
        "/api/tenants/acme/records/contact/999999",
        headers={"Authorization": f"Bearer {site.tokens['acme-admin']}"},
    )
    r = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    body = r.text
    assert re.search(
        r'provisioner_http_requests_total\{method="GET",'
        r'route="/api/tenants/\{tenant\}/records/contact/\{record_id\}",'
        r'status="404"\} [1-9]',
        body,
    ), body[:2000]
    assert (
        'provisioner_http_request_duration_seconds_bucket{le="0.005"' in body
        or "provisioner_http_request_duration_seconds_bucket{" in body
    )
    assert re.search(r'provisioner_errors_total\{code="not_found"\} [1-9]', body)
    assert "provisioner_db_pool_in_use" in body
    assert "provisioner_transfers" in body
    assert "provisioner_rollout_targets" in body


def test_a_request_waits_for_a_pooled_connection_instead_of_failing(
    site: Site, db_url: str, clock: FrozenClock
) -> None:
    engine = make_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=10)
    client = _client(engine, clock)
    held = engine.connect()
    releaser = threading.Timer(0.5, held.close)  # another request finishing
    releaser.start()
    started = time.monotonic()
    r = _create(client, site.tokens["acme-admin"])
    releaser.join()
    assert r.status_code == 201, r.text
    assert time.monotonic() - started >= 0.4
    engine.dispose()


@pytest.mark.postgres
def test_requests_succeed_after_the_server_ended_every_connection(
    site: Site, db_url: str, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """What a PostgreSQL restart does to a running server's pool: every connection it
    holds is ended by the server. The next requests get fresh connections, not errors."""
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL restart")
    engine = make_engine(db_url, pool_size=3, max_overflow=0)
    client = _client(engine, clock)
    assert _create(client, site.tokens["acme-admin"]).status_code == 201
    admin = make_engine(db_url, pool_size=1, max_overflow=0)
    with admin.begin() as conn:
        pids = (
            conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            .scalars()
            .all()
        )
        ended = conn.exec_driver_sql(
            "SELECT count(pg_terminate_backend(p)) FROM unnest(%(p)s::int[]) AS p",
            {"p": list(pids)},
        ).scalar_one()
    # pg_terminate_backend only signals: wait until the backends are gone, as after a
    # restart (else a pre-ping may still reach a backend that dies under the request)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with admin.connect() as conn:
            alive = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%(p)s)", {"p": list(pids)}
            ).scalar_one()
        if not alive:
            break
        time.sleep(0.05)
    admin.dispose()
    assert ended >= 1
    with caplog.at_level(logging.ERROR, logger="provisioner"):
        statuses = [_create(client, site.tokens["acme-admin"]).status_code for _ in range(5)]
    assert statuses == [201] * 5
    assert not _error_lines(caplog)
    engine.dispose()


def test_psycopgs_derived_pipeline_error_line_is_not_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """psycopg logs "error ignored terminating <psycopg.Pipeline [BAD]>" after a pipeline
    block already failed; that failure is raised and reported, the echo is dropped."""
    from provisioner.db import failures  # noqa: F401  (installs the filter)

    with caplog.at_level(logging.WARNING, logger="psycopg"):
        logging.getLogger("psycopg").warning(
            "error ignored terminating %r: %s", "<psycopg.Pipeline [BAD]>", "consuming input"
        )
        logging.getLogger("psycopg").warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]


def test_a_console_error_page_shows_the_request_id(site: Site) -> None:
    site.client.cookies.set("provisioner_session", site.tokens["acme-admin"])
    r = site.client.get("/customers/999999", headers={"X-Request-ID": "page-1"})
    assert r.status_code == 404
    assert "<code>page-1</code>" in r.text


def test_any_part_of_the_product_can_count_something() -> None:
    from provisioner import metrics

    metrics.count("provisioner_test_things_total", kind="widget")
    metrics.count("provisioner_test_things_total", 2, kind="widget")
    metrics.workflow_firings.labels(outcome="sent").inc()
    text = metrics.render().decode()
    assert re.search(r'provisioner_test_things_total\{kind="widget"\} 3', text)
    assert re.search(r'provisioner_workflow_firings_total\{outcome="sent"\} [1-9]', text)


def test_readyz_warns_when_the_sqlite_disk_has_little_room(
    site: Site, sqlite_only: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.web import app as web_app

    free = shutil.disk_usage(Path(make_url(sqlite_only).database or "").parent).free
    if free > web_app.SQLITE_HEADROOM:
        assert "warnings" not in site.call("GET", "/readyz").json()
    monkeypatch.setattr(web_app, "SQLITE_HEADROOM", free * 2)  # as if the disk were small
    r = site.call("GET", "/readyz")
    assert r.status_code == 200
    [warning] = r.json()["warnings"]
    assert "MiB free on the SQLite database's disk" in warning
