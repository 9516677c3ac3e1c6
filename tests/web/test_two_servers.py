"""Several ``provisioner serve`` processes on one PostgreSQL behave as one (issue 16).

Two real server processes (``serve --workers 1`` each, their own pools and
schedulers) share one database. A session made on one is valid on the other and
ended on both by a logout on either; failed logins sent to both add up to one
throttle; failed copy-key attempts sent to both add up to one limit; both
schedulers run the workflow date rules every 0.3 s and each due firing happens
once. PostgreSQL only (the deployment this is about); it fails rather than skips
in CI (``postgres_url``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from provisioner.db import tenancy
from provisioner.db.engine import make_engine
from provisioner.security import copykey
from provisioner.security.keystore import MasterKey
from provisioner.services.context import Provisioner
from provisioner.services.crm import records
from provisioner.services.provisioning import auth
from tests.conftest import MASTER_KEY, _truncate
from tests.support import World
from tests.web.test_serve import _free_port, _wait_ready
from tests.workflows.helpers import rule, with_rules

pytestmark = pytest.mark.postgres
PASSWORD = "correct horse battery"


def _call(
    port: int, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api{path}", data=data, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def shared(postgres_owner_url: str, postgres_url: str, env: None) -> Iterator[Provisioner]:
    owner = make_engine(postgres_owner_url, pool_size=1, max_overflow=0)
    _truncate(owner)  # as the database's owner: the runtime role has rows, not tables
    owner.dispose()
    engine = make_engine(postgres_url, pool_size=2, max_overflow=0)
    app = Provisioner(engine, master_key=MasterKey(MASTER_KEY))
    world = World(app)
    today = date.today()
    # birthdays around today: whichever the servers' date makes due (3 days ahead) fires
    with_rules(
        world,
        rule(
            "birthday",
            "contact",
            "date",
            [
                {
                    "type": "create_activity",
                    "kind": "email",
                    "content": "誕生日カード",
                    "due_in_days": 0,
                }
            ],
            field="contact.birthday",
            days=-3,
            yearly=True,
        ),
    )
    world.tenant("beta")
    with app.transaction() as ctx:
        admin = world.actor("acme")
        for n in range(-2, 7):
            day = today + timedelta(days=n)
            records.create(
                ctx,
                admin,
                "contact",
                {
                    "name": f"誕生 {n + 2}",
                    "birthday": f"1980-{day.month:02d}-{day.day:02d}"
                    if (day.month, day.day) != (2, 29)
                    else "1980-03-01",
                },
            )
        for login in ("acme-admin", "beta-admin"):
            auth.set_initial_password(ctx, login, PASSWORD, by="test")
    yield app
    engine.dispose()


@pytest.fixture
def servers(shared: Provisioner, postgres_url: str) -> Iterator[tuple[int, int]]:
    procs: list[subprocess.Popen[bytes]] = []
    ports = []
    try:
        for _ in range(2):
            port = _free_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from provisioner.cli.main import main; main()",
                        "--db",
                        postgres_url,
                        "serve",
                        "--port",
                        str(port),
                        "--workers",
                        "1",
                        "--scheduler-seconds",
                        "0.3",
                        "--max-db-connections",
                        "4",
                        "--graceful-timeout",
                        "5",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=os.environ.copy(),
                    cwd=Path(__file__).resolve().parents[2],
                )
            )
            ports.append(port)
        for port, proc in zip(ports, procs, strict=True):
            _wait_ready(port, proc)
        yield ports[0], ports[1]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            finally:
                proc.kill()


def test_two_servers_share_sessions_throttles_key_failures_and_due_firings(
    servers: tuple[int, int], shared: Provisioner
) -> None:
    a, b = servers
    # sessions: made on A, valid on B; a logout on B ends it on A
    status, session = _call(a, "POST", "/login", {"login": "acme-admin", "password": PASSWORD})
    assert status == 200, session
    token = session["token"]
    assert _call(b, "GET", "/session", token=token)[0] == 200
    assert _call(b, "POST", "/logout", token=token)[0] in (200, 204)
    assert _call(a, "GET", "/session", token=token)[0] == 401

    # login throttle: failures sent to A and B alternately count together (5 per pair)
    answers = [
        _call((a, b)[n % 2], "POST", "/login", {"login": "acme-admin", "password": "wrong"})[0]
        for n in range(8)
    ]
    first_429 = answers.index(429) if 429 in answers else None
    assert first_429 is not None, answers
    assert first_429 <= 6, answers  # apart, neither server would have counted 5 yet

    # copy-key failures of the sending tenant: counted in the database, across servers
    status, beta = _call(b, "POST", "/login", {"login": "beta-admin", "password": PASSWORD})
    assert status == 200, beta
    status, acme = _call(b, "POST", "/login", {"login": "acme-admin", "password": PASSWORD})
    if status == 429:  # the throttle above still holds the pair: wait it out
        time.sleep(float(acme["error"].get("retry_after") or 2) + 0.5)
        status, acme = _call(b, "POST", "/login", {"login": "acme-admin", "password": PASSWORD})
    assert status == 200, acme
    status, made = _call(a, "POST", "/tenants/acme/keys", {}, token=acme["token"])
    assert status in (200, 201), made
    real = copykey.parse(made["key"])  # the right selector, a wrong secret (checksum valid)
    wrong = copykey.CopyKey(real.selector, "0" * copykey.SECRET_LEN).text
    codes = []
    for n in range(7):
        status, body = _call(
            (a, b)[n % 2], "POST", "/tenants/beta/send", {"key": wrong}, token=beta["token"]
        )
        codes.append((status, body["error"]["code"]))
    assert codes[:5] == [codes[0]] * 5, codes
    assert codes[0][0] in (400, 403, 404, 422), codes
    assert codes[5] == (429, "rate_limited"), codes  # the 6th, on B: 3 failed on A, 2 on B
    assert codes[6] == (429, "rate_limited"), codes

    # the date scheduler runs in both servers; each due firing happens once
    deadline = time.monotonic() + 30
    with shared.engine.connect() as conn:
        while time.monotonic() < deadline:
            tenancy.set_operator(conn, "read")  # every tenant's rows (the test inspects)
            fired = conn.execute(text("SELECT count(*) FROM wf_due_firings")).scalar_one()
            conn.commit()
            if fired:
                break
            time.sleep(0.3)
    time.sleep(2)  # several more scheduler rounds in both servers
    with shared.engine.connect() as conn:
        tenancy.set_operator(conn, "read")  # every tenant's rows (the test inspects)
        firings = conn.execute(text("SELECT count(*) FROM wf_due_firings")).scalar_one()
        cards = conn.execute(
            text(
                "SELECT contact_id, count(*) FROM crm_activities "
                "WHERE content = '誕生日カード' GROUP BY contact_id"
            )
        ).all()
    assert firings >= 1
    assert len(cards) == firings, cards
    assert all(n == 1 for _, n in cards), cards
