"""``provisioner serve``: registered on the CLI, refuses an unready database like every command."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provisioner.cli.main import cli
from provisioner.db.engine import make_engine
from provisioner.web.app import BENCH_BARE_PATH
from provisioner.web.server import BENCH_DEFAULT_BODY, app_from_environment


def test_serve_refuses_an_uninitialised_database(env: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path}/new.db", "serve"])
    assert result.exit_code == 1
    assert "the database is not initialised" in result.output
    assert "run 'provisioner init' first" in result.output


def test_the_server_app_comes_from_the_environment(
    env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/db.db"
    assert CliRunner().invoke(cli, ["--db", url, "init"]).exit_code == 0
    monkeypatch.setenv("PROVISIONER_DATABASE_URL", url)
    app = app_from_environment()
    assert app.state.settings.secure_cookies is True
    monkeypatch.setenv("PROVISIONER_INSECURE_COOKIES", "1")
    assert app_from_environment().state.settings.secure_cookies is False


def test_the_bench_route_is_absent_unless_the_environment_enables_it(
    env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    url = f"sqlite:///{tmp_path}/db.db"
    assert CliRunner().invoke(cli, ["--db", url, "init"]).exit_code == 0
    monkeypatch.setenv("PROVISIONER_DATABASE_URL", url)
    monkeypatch.delenv("PROVISIONER_BENCH_ROUTES", raising=False)
    monkeypatch.delenv("PROVISIONER_BENCH_BODY", raising=False)
    path = "/api/tenants/acme/bench-bare"
    for value in (None, "0"):
        if value is not None:
            monkeypatch.setenv("PROVISIONER_BENCH_ROUTES", value)
        app = app_from_environment()
        assert not any(getattr(r, "path", "") == BENCH_BARE_PATH for r in app.routes)
        with TestClient(app) as client:
            assert client.get(path).status_code == 404
            assert "bench" not in json.dumps(client.get("/openapi.json").json()["paths"])

    body = '{"contact": {"name": "山田 太郎"}, "purchases": []}'.encode()
    (tmp_path / "body.json").write_bytes(body)
    monkeypatch.setenv("PROVISIONER_BENCH_ROUTES", "1")
    monkeypatch.setenv("PROVISIONER_BENCH_BODY", str(tmp_path / "body.json"))
    with TestClient(app_from_environment()) as client:
        answer = client.get(path, headers={"Authorization": "Bearer whatever"})
        assert answer.status_code == 200
        assert answer.content == body  # the bytes as given, no database work
        assert answer.headers["content-type"] == "application/json"
        # through the same middleware as every route: request id, security headers
        assert answer.headers["x-request-id"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        # the path parameters are checked as on every API route (an invalid one from a
        # caller without a session: 401 first)
        bad = client.get("/api/tenants/Not_A_Slug/bench-bare", headers=answer.request.headers)
        assert bad.status_code == 401
        assert "bench" not in json.dumps(client.get("/openapi.json").json()["paths"])
    monkeypatch.delenv("PROVISIONER_BENCH_BODY")
    with TestClient(app_from_environment()) as client:
        assert client.get(path).content == BENCH_DEFAULT_BODY


# --------------------------------------------------------------------------- operating serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "serve exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


def test_two_workers_log_json_lines_and_add_up_their_metrics(env: None, tmp_path: Path) -> None:
    """serve --workers 2 --log-format json --metrics-token: every stderr line is one JSON
    object, /metrics (with the token only) counts the requests of both workers, and
    SIGTERM stops it within the graceful timeout."""
    url = f"sqlite:///{tmp_path}/db.db"
    assert CliRunner().invoke(cli, ["--db", url, "init"]).exit_code == 0
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from provisioner.cli.main import main; main()",
            "--db",
            url,
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-format",
            "json",
            "--metrics-token",
            "tok",
            "--graceful-timeout",
            "5",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        _wait_ready(port, proc)
        for _ in range(40):
            status, body, headers = _get(port, "/api/tenants", {"X-Request-ID": "e2e-1"})
            assert status == 401
            assert json.loads(body)["error"]["request_id"] == "e2e-1"
            assert headers["X-Request-ID"] == "e2e-1"
        assert _get(port, "/metrics")[0] == 401
        status, text, _ = _get(port, "/metrics", {"Authorization": "Bearer tok"})
        assert status == 200
        match = re.search(
            r'provisioner_http_requests_total\{method="GET",'
            r'route="/api/tenants",status="401"\} (\d+)',
            text,
        )
        assert match is not None, text[:3000]
        assert float(match.group(1)) == 40
        errors = re.search(r'provisioner_errors_total\{code="unauthenticated"\} (\S+)', text)
        assert errors is not None
        assert float(errors.group(1)) == 41  # and the /metrics call without the token
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    lines = [line for line in err.decode().splitlines() if line.strip()]
    records = []
    for line in lines:
        if line.startswith("provisioner console on") or line.startswith("connections:"):
            continue  # serve's own banner, before logging starts
        records.append(json.loads(line))
    assert records, err.decode()
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any("Started server process" in r["message"] for r in records)


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # the server went away mid-request
        return 0, str(exc)


def test_sigterm_cuts_a_long_import_after_the_graceful_timeout_leaving_nothing(
    env: None, tmp_path: Path
) -> None:
    """serve --graceful-timeout 1: SIGTERM during a 60,000-row import stops the server
    within the timeout (plus shutdown), and the import is all or nothing."""
    url = f"sqlite:///{tmp_path}/db.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", url, "init"]).exit_code == 0
    assert (
        runner.invoke(cli, ["--db", url, "tenant", "create", "acme", "--name", "ACME"]).exit_code
        == 0
    )
    added = runner.invoke(
        cli,
        [
            "--db",
            url,
            "user",
            "add",
            "boss",
            "--tenant",
            "acme",
            "--role",
            "admin",
            "--password-stdin",
        ],
        input="correct horse battery\n",
    )
    assert added.exit_code == 0, added.output
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from provisioner.cli.main import main; main()",
            "--db",
            url,
            "serve",
            "--port",
            str(port),
            "--graceful-timeout",
            "1",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        _wait_ready(port, proc)
        status, body = _post(
            port,
            "/api/login",
            json.dumps({"login": "boss", "password": "correct horse battery"}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200, body
        token = json.loads(body)["token"]
        rows = "氏名,電話番号\r\n" + "".join(f"取込 {i},03-{i:08d}\r\n" for i in range(60_000))
        boundary = "b0undary"
        upload = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="c.csv"\r\nContent-Type: text/csv\r\n\r\n'
            ).encode()
            + rows.encode()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        outcome: list[tuple[int, str]] = []
        importer = threading.Thread(
            target=lambda: outcome.append(
                _post(
                    port,
                    "/api/tenants/acme/import/customers",
                    upload,
                    {
                        "Authorization": f"Bearer {token}",
                        "Content-Type": f"multipart/form-data; boundary={boundary}",
                    },
                )
            )
        )
        importer.start()
        time.sleep(1.0)  # the import is under way
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.monotonic() - stopped_at
        importer.join(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    engine = make_engine(url)
    with engine.connect() as conn:
        contacts = conn.exec_driver_sql("SELECT count(*) FROM crm_contacts").scalar_one()
    engine.dispose()
    assert contacts in (0, 60_000)
    if contacts == 0:  # cut: the request got no 200
        assert outcome[0][0] != 200
        assert took < 15
    else:
        assert outcome[0][0] == 200
