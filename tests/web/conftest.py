"""Web fixtures: a small world behind the real FastAPI app, on SQLite and PostgreSQL.

Passwords are hashed with Argon2id as in production, with lighter parameters
(time 1, 8 MiB) so that the many logins of these tests stay fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from provisioner.clock import FrozenClock
from provisioner.services import actors
from provisioner.services.context import Provisioner
from provisioner.services.crm import records
from provisioner.services.provisioning import auth, groups
from provisioner.web import create_app
from provisioner.web.security import Settings
from tests.support import World

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def light_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        auth, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    )


@dataclass
class Site:
    app: Provisioner
    world: World
    clock: FrozenClock
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)

    def password(self, login: str) -> None:
        with self.app.transaction() as ctx:
            auth.set_initial_password(ctx, login, PASSWORD, by="test")

    def login(self, login: str) -> str:
        response = self.client.post("/api/login", json={"login": login, "password": PASSWORD})
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        self.tokens[login] = token
        return token

    def call(self, method: str, path: str, login: str | None = None, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}) or {})
        if login is not None:
            headers["Authorization"] = f"Bearer {self.tokens[login]}"
        return self.client.request(method, path, headers=headers, **kw)


def build_site(app: Provisioner, clock: FrozenClock, settings: Settings | None = None) -> Site:
    world = World(app)
    client = TestClient(create_app(app, settings=settings), base_url="https://testserver")
    return Site(app, world, clock, client)


@pytest.fixture
def site(app: Provisioner, clock: FrozenClock) -> Iterator[Site]:
    """acme (target, in group acme-group with acme-tokyo) and beta (another company).

    Users: acme-admin (admin of acme and acme-tokyo), acme-ro (read_only in acme),
    beta-admin (admin of beta). Each has a password and an API token.
    """
    s = build_site(app, clock)
    w = s.world
    w.tenant("acme", users={"acme-ro": "read_only", "acme-gen": "general"})
    w.tenant("acme-tokyo")
    w.tenant("beta")
    with app.transaction() as ctx:
        groups.create(ctx, "acme-group", name="ACME グループ")
        groups.add_tenant(ctx, "acme-group", "acme")
        groups.add_tenant(ctx, "acme-group", "acme-tokyo")
        from provisioner.services import tenants

        tenants.add_user(ctx, "acme-admin", tenant_slug="acme-tokyo", role="admin")
    for login in ("acme-admin", "acme-ro", "acme-gen", "beta-admin"):
        s.password(login)
        s.login(login)
    with app.transaction() as ctx:
        actor = actors.resolve(ctx, "acme-admin", "acme")
        saved = records.create(
            ctx,
            actor,
            "contact",
            {
                "name": "山田 太郎",
                "kana": "ヤマダ タロウ",
                "phone": "03-1234-5678",
                "memo_1": "お得意様",
                "checkboxes": [1, 3],
            },
        )
        s.ids["contact"] = saved.record["id"]
        act = records.create(
            ctx,
            actor,
            "activity",
            {
                "contact_id": saved.record["id"],
                "date": "2026-11-01",
                "kind": "phone",
                "content": "見積依頼",
            },
        )
        s.ids["activity"] = act.record["id"]
    yield s
    s.client.close()
