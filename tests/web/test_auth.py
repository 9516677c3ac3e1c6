"""Sessions over HTTP: login, tenants, switching, logout, expiry, rate limits, cookies, CSRF."""

from __future__ import annotations

import re

from provisioner.web.security import SESSION_COOKIE
from tests.web.conftest import PASSWORD, Site


def test_login_lists_tenants_with_the_first_selected(site: Site) -> None:
    r = site.client.post("/api/login", json={"login": "acme-admin", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert [t["slug"] for t in body["tenants"]] == ["acme", "acme-tokyo"]
    assert [t["number"] for t in body["tenants"]] == [1, 2]
    assert body["selected"] == "acme"
    assert body["tenants"][0]["group"] == "acme-group"
    assert body["expires_at"] == "2026-11-23T21:00:00Z"  # 12 hours


def test_wrong_password_is_a_json_error_with_a_stable_code(site: Site) -> None:
    r = site.client.post("/api/login", json={"login": "acme-admin", "password": "nope-nope"})
    assert r.status_code == 403
    assert r.json() == {
        "error": {
            "code": "permission_denied",
            "message": "login id or password is wrong",
            "request_id": r.headers["X-Request-ID"],
        }
    }
    r = site.client.post("/api/login", json={"login": "acme-admin"})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "validation_failed"
    assert any(p.startswith("password") for p in error["problems"])


def test_switch_tenant_without_logging_in_again(site: Site) -> None:
    assert site.call("GET", "/api/session", "acme-admin").json()["selected"] == "acme"
    r = site.call("POST", "/api/session/tenant", "acme-admin", json={"tenant": "2"})
    assert r.status_code == 200
    assert r.json() == {"selected": "acme-tokyo", "role": "admin"}
    assert site.call("GET", "/api/tenants/current", "acme-admin").json()["slug"] == "acme-tokyo"
    r = site.call("POST", "/api/session/tenant", "acme-admin", json={"tenant": "beta"})
    assert r.status_code == 404
    assert "your tenants: 1=acme, 2=acme-tokyo" in r.json()["error"]["hint"]


def test_logout_and_expiry_end_the_session(site: Site) -> None:
    assert site.call("GET", "/api/session", "acme-ro").status_code == 200
    assert site.call("POST", "/api/logout", "acme-ro").status_code == 200
    r = site.call("GET", "/api/session", "acme-ro")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"
    assert r.headers["www-authenticate"] == "Bearer"
    # expiry: 12 hours after login
    site.clock.advance(hours=11, minutes=59)
    assert site.call("GET", "/api/session", "acme-admin").status_code == 200
    site.clock.advance(minutes=1)
    assert site.call("GET", "/api/session", "acme-admin").status_code == 401
    assert site.client.get("/api/session").status_code == 401  # no token at all


def test_failed_logins_are_rate_limited(site: Site) -> None:
    """After 5 failures of a login from one client, that client waits, twice as long
    after each further failure; the wait over, the right password works."""
    for _ in range(5):
        r = site.client.post("/api/login", json={"login": "acme-gen", "password": "wrong-pass"})
        assert r.status_code == 403
    r = site.client.post("/api/login", json={"login": "acme-gen", "password": PASSWORD})
    assert r.status_code == 429  # even the right password, for a moment
    assert r.json()["error"]["code"] == "rate_limited"
    assert r.headers["retry-after"] == "1"
    site.clock.advance(seconds=1)
    r = site.client.post("/api/login", json={"login": "acme-gen", "password": PASSWORD})
    assert r.status_code == 200


def test_openapi_document(site: Site) -> None:
    r = site.client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.")
    assert "/api/tenants/{tenant}/inbox/{transfer_id}/approve" in spec["paths"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert not any(p.startswith("/inbox") for p in spec["paths"])  # console pages are not API


def test_unknown_route_is_a_json_404(site: Site) -> None:
    r = site.client.get("/api/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def _console_login(site: Site, login: str) -> str:
    page = site.client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    r = site.client.post(
        "/login",
        data={"login": login, "password": PASSWORD, "csrf": csrf.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    cookies = [c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    assert len(cookies) == 1
    return cookies[0]


def test_session_cookie_flags(site: Site) -> None:
    cookie = _console_login(site, "acme-admin")
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "max-age", "expires", "path"} <= flags
    assert "samesite=lax" in cookie.lower()
    assert "max-age=43200" in cookie.lower()


def test_console_login_needs_its_form_token(site: Site) -> None:
    site.client.get("/login")
    r = site.client.post(
        "/login",
        data={"login": "acme-admin", "password": PASSWORD, "csrf": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_console_forms_refuse_a_missing_or_wrong_csrf_token(site: Site) -> None:
    _console_login(site, "acme-admin")
    home = site.client.get("/")
    assert home.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', home.text)
    assert token
    before = site.call("GET", "/api/tenants/acme/keys", "acme-admin").json()
    for bad in ({}, {"csrf": "0" * 32}):
        r = site.client.post("/keys", data=bad, follow_redirects=False)
        assert r.status_code == 403
        assert "このサイトから送信されたものではありません" in r.text  # the message, translated
    assert site.call("GET", "/api/tenants/acme/keys", "acme-admin").json() == before
    r = site.client.post("/keys", data={"csrf": token.group(1)})
    assert r.status_code == 200
    assert len(site.call("GET", "/api/tenants/acme/keys", "acme-admin").json()) == len(before) + 1


def test_console_without_a_session_goes_to_login(site: Site) -> None:
    r = site.client.get("/inbox", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
