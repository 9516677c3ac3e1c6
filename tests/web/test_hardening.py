"""Sessions, keys, files (issue 11): login throttling per (login, client) with growing
delays kept in the database, the trusted proxy, the login form's HMAC-bound CSRF token,
HSTS over HTTPS."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from provisioner.services.context import Provisioner
from provisioner.services.provisioning import auth
from provisioner.web import create_app
from provisioner.web.security import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Settings
from tests.web.conftest import PASSWORD, Site

PROXY = Settings(trusted_proxies=("testclient",))  # TestClient's peer address


@pytest.fixture
def proxied(site: Site) -> Iterator[Site]:
    """The site behind a trusted reverse proxy (the test client's address)."""
    direct = site.client
    site.client = TestClient(create_app(site.app, settings=PROXY), base_url="https://testserver")
    yield site
    site.client.close()
    site.client = direct


def _login(
    site: Site, password: str, client: str | None = None, http: TestClient | None = None
) -> int:
    headers = {"X-Forwarded-For": client} if client else {}
    r = (http or site.client).post(
        "/api/login", json={"login": "acme-gen", "password": password}, headers=headers
    )
    return int(r.status_code)


def test_a_guesser_elsewhere_does_not_lock_out_the_real_user(proxied: Site) -> None:
    """Threat: 10 bad passwords blocked the correct one for 15 minutes, for everyone."""
    for _ in range(12):
        assert _login(proxied, "wrong-pass", "203.0.113.66") in (403, 429)
    assert _login(proxied, PASSWORD, "203.0.113.66") == 429
    assert _login(proxied, PASSWORD, "198.51.100.7") == 200  # the real user, at home


def test_delays_grow_with_each_failure(site: Site) -> None:
    waits = []
    for _ in range(5):
        assert _login(site, "wrong-pass") == 403
    for _ in range(4):
        r = site.client.post("/api/login", json={"login": "acme-gen", "password": PASSWORD})
        assert r.status_code == 429
        waits.append(int(r.headers["retry-after"]))
        site.clock.advance(seconds=waits[-1])
        assert _login(site, "wrong-pass") == 403
    assert waits == [1, 2, 4, 8]
    assert auth.delay_after("login:x|y", 40) == auth.MAX_DELAY


def test_counters_survive_a_restart(site: Site) -> None:
    """The counters are in the database: a new process (a new app) still makes them wait."""
    for _ in range(6):
        _login(site, "wrong-pass")
    restarted = TestClient(create_app(site.app), base_url="https://testserver")
    assert _login(site, PASSWORD, http=restarted) == 429
    site.clock.advance(seconds=2)
    assert _login(site, PASSWORD, http=restarted) == 200
    restarted.close()


def test_forwarded_for_is_ignored_without_a_trusted_proxy(site: Site) -> None:
    """Threat: a client varies X-Forwarded-For to dodge its throttle."""
    for n in range(6):
        _login(site, "wrong-pass", f"203.0.113.{n}")
    assert _login(site, PASSWORD, "198.51.100.7") == 429  # all counted to the real peer


def test_trusted_proxy_takes_the_last_untrusted_forwarded_address(proxied: Site) -> None:
    for n in range(6):  # the client forges the left part; the proxy appends the peer
        _login(proxied, "wrong-pass", f"10.9.9.{n}, 203.0.113.66")
    assert _login(proxied, PASSWORD, "203.0.113.66") == 429
    assert _login(proxied, PASSWORD, "10.9.9.1, 198.51.100.7") == 200


def test_password_spraying_from_one_client_is_slowed(proxied: Site) -> None:
    """Per client address, over every login id: after 50 failures that client waits."""
    for n in range(auth.FREE_FAILURES_PER_CLIENT):
        r = proxied.client.post(
            "/api/login",
            json={"login": f"nobody-{n}", "password": "x" * 8},
            headers={"X-Forwarded-For": "203.0.113.66"},
        )
        assert r.status_code == 403
    assert _login(proxied, PASSWORD, "203.0.113.66") == 429
    assert _login(proxied, PASSWORD, "198.51.100.7") == 200


# --------------------------------------------------------------------------- login CSRF


def _form(site: Site) -> tuple[str, str]:
    page = site.client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    return token.group(1), site.client.cookies[LOGIN_CSRF_COOKIE]


def test_login_csrf_token_is_an_hmac_of_the_pre_session(site: Site) -> None:
    """Threat: a plain double submit (form value == cookie value) is beaten by anyone who
    can plant the cookie; the token is now an HMAC of it under a server key."""
    token, pre_session = _form(site)
    assert token != pre_session
    r = site.client.post(
        "/login",
        data={"login": "acme-admin", "password": PASSWORD, "csrf": pre_session},
        follow_redirects=False,
    )
    assert r.status_code == 403  # the double submit of old
    token, _ = _form(site)
    site.client.cookies.clear()
    r = site.client.post(
        "/login",
        data={"login": "acme-admin", "password": PASSWORD, "csrf": token},
        follow_redirects=False,
        headers={"Cookie": f"{LOGIN_CSRF_COOKIE}=planted-by-an-attacker"},
    )
    assert r.status_code == 403  # a token for another pre-session
    token, _ = _form(site)
    r = site.client.post(
        "/login",
        data={"login": "acme-admin", "password": PASSWORD, "csrf": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert SESSION_COOKIE in r.headers.get("set-cookie", "")


# --------------------------------------------------------------------------- HSTS


def test_hsts_over_https_only(site: Site, app: Provisioner) -> None:
    hsts = "strict-transport-security"
    assert (
        site.client.get("/openapi.json").headers.get(hsts) == "max-age=31536000; includeSubDomains"
    )
    plain = TestClient(create_app(app), base_url="http://testserver")
    assert hsts not in plain.get("/openapi.json").headers
    assert hsts not in plain.get("/openapi.json", headers={"X-Forwarded-Proto": "https"}).headers
    behind = TestClient(create_app(app, settings=PROXY), base_url="http://testserver")
    assert behind.get("/openapi.json", headers={"X-Forwarded-Proto": "https"}).headers[hsts]
    plain.close()
    behind.close()


# --------------------------------------------------------------------------- bounded bodies


def test_csv_error_body_is_bounded_in_the_api(site: Site) -> None:
    """Threat: a 1,000,000-column header made a 100 MB error body."""
    for columns, total in ((1_000_000, None), (400, 400)):
        raw = ("氏名," + ",".join(f"x{i}" for i in range(columns))).encode()
        r = site.call(
            "POST",
            "/api/tenants/acme/import/customers",
            "acme-admin",
            files={"file": ("wide.csv", io.BytesIO(raw), "text/csv")},
        )
        assert r.status_code == 422
        assert len(r.content) < 8192, len(r.content)
        assert r.json()["error"].get("problems_total") == total
