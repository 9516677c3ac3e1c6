"""User administration over the API (issue 12): admins only, the same services as the CLI."""

from __future__ import annotations

from tests.web.conftest import PASSWORD, Site


def test_user_admin_over_the_api(site: Site) -> None:
    users = site.call("GET", "/api/tenants/acme/users", "acme-admin")
    assert users.status_code == 200, users.text
    assert [(u["login"], u["role"]) for u in users.json()] == [
        ("acme-admin", "admin"),
        ("acme-gen", "general"),
        ("acme-ro", "read_only"),
    ]
    assert site.call("GET", "/api/tenants/acme/users", "acme-gen").status_code == 403
    role = site.call(
        "PUT",
        "/api/tenants/acme/users/acme-ro/role",
        "acme-admin",
        json={"role": "general_no_print"},
    )
    assert role.json()["role"] == "general_no_print"
    made = site.call(
        "POST",
        "/api/tenants/acme/user-departments",
        "acme-admin",
        json={"code": "sales", "name": "営業部"},
    )
    assert made.status_code == 201, made.text
    dept = site.call(
        "PUT", "/api/tenants/acme/users/acme-gen/department", "acme-admin", json={"code": "sales"}
    )
    assert dept.json()["department"] == "sales"
    # disabled: acme-gen's session no longer reaches acme
    assert (
        site.call("POST", "/api/tenants/acme/users/acme-gen/disable", "acme-admin").json()[
            "disabled"
        ]
        is True
    )
    assert (
        site.call("GET", "/api/tenants/acme/search", "acme-gen", params={"q": "山田"}).status_code
        == 401
    )
    site.call("POST", "/api/tenants/acme/users/acme-gen/enable", "acme-admin")
    reset = site.call("POST", "/api/tenants/acme/users/acme-gen/password-reset", "acme-admin")
    assert reset.status_code == 200, reset.text
    fresh = reset.json()["password"]
    assert (
        site.client.post("/api/login", json={"login": "acme-gen", "password": PASSWORD}).status_code
        == 403
    )
    assert (
        site.client.post("/api/login", json={"login": "acme-gen", "password": fresh}).status_code
        == 200
    )
    assert site.call("DELETE", "/api/tenants/acme/users/acme-ro", "acme-admin").json() == {
        "removed": "acme-ro"
    }
    assert site.call("DELETE", "/api/tenants/acme/users/acme-ro", "acme-admin").status_code == 404
    # the admin still reads the inbox (general users: test_api.py MATRIX)
    assert site.call("GET", "/api/tenants/acme/inbox", "acme-admin").status_code == 200
