"""End to end in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

A target admin logs in, picks a tenant, generates a copy key; the source
tenant's admin, in another browser, sends with it; the target admin approves it
in the inbox and the customer page shows the new labels.

The server is the real app on uvicorn on a loopback port. ``PROVISIONER_SCREENSHOTS=DIR``
saves the main pages there (``docs/screenshots`` is made that way). Without
Chromium the test is skipped, except in CI (``CI`` set), where it fails: CI
installs ``chromium`` (see ``.ci/run``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from provisioner.clock import SystemClock
from provisioner.db.engine import make_engine
from provisioner.security.keystore import MasterKey
from provisioner.services import actors, tenants
from provisioner.services.context import Provisioner
from provisioner.services.crm import records
from provisioner.services.provisioning import auth
from provisioner.web import create_app
from tests.conftest import MASTER_KEY
from tests.support import World
from tests.web.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def db_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only: the browser drives the same code paths on either database."""
    path = tmp_path / "e2e.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def server(db_url: str) -> Iterator[tuple[str, Provisioner]]:
    engine = make_engine(db_url)
    app = Provisioner(engine, master_key=MasterKey(MASTER_KEY), clock=SystemClock())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(app), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://localhost:{port}", app
    srv.should_exit = True
    thread.join(5)
    engine.dispose()


def _world(app: Provisioner) -> int:
    w = World(app)
    w.tenant("client-a")
    w.tenant("client-b")
    w.tenant("partner")
    with app.transaction() as ctx:
        tenants.add_user(ctx, "yamada", tenant_slug="client-a", role="admin")
        tenants.add_user(ctx, "yamada", tenant_slug="client-b", role="admin")
        auth.set_initial_password(ctx, "yamada", PASSWORD, by="test")
        auth.set_initial_password(ctx, "partner-admin", PASSWORD, by="test")
        customer = records.create(ctx, actors.resolve(ctx, "yamada", "client-a"), "contact", {
            "name": "佐藤 花子", "kana": "サトウ ハナコ", "phone": "03-5555-0101",
            "memo_1": "毎年ご購入", "checkboxes": [1, 2]})
    data = w.config("partner")
    boxes = [dict(c) for c in data["checkboxes"]]
    for index, label in enumerate(("年賀状", "暑中見舞", "お中元", "お歳暮", "VIP")):
        boxes[index]["label"] = label
    memos = [dict(m) for m in data["memo_fields"]]
    memos[0]["label"] = "ご要望"
    w.set_config("partner", {"checkboxes": boxes, "memo_fields": memos})
    record_id: int = customer.record["id"]
    return record_id


def test_copy_a_configuration_through_the_console(server: tuple[str, Provisioner],
                                                  tmp_path: Path) -> None:
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    base, app = server
    customer = _world(app)
    shots = Path(os.environ.get("PROVISIONER_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            target = browser.new_context(viewport={"width": 1280, "height": 860},
                                         locale="ja-JP")
            page = target.new_page()
            page.goto(f"{base}/login")
            page.screenshot(path=str(shots / "01-login.png"))
            page.fill("input[name=login]", "yamada")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit].primary")
            # two tenants: the selection page, the first preselected
            expect(page).to_have_url(f"{base}/tenants")
            expect(page.locator("input[type=radio][value=client-a]")).to_be_checked()
            page.screenshot(path=str(shots / "02-tenant-selection.png"))
            page.click("#open-tenant")
            expect(page.locator("h1")).to_contain_text("client-a 株式会社")
            page.screenshot(path=str(shots / "03-home.png"))
            # a copy key, shown once with its expiry
            page.click("nav.menu a[href='/keys']")
            page.click("#generate-key")
            key = page.locator("#new-key").inner_text().strip()
            expect(page.locator("#new-key-expiry")).to_contain_text("Z")
            page.screenshot(path=str(shots / "04-copy-key.png"))

            # the partner's admin, in another browser, sends with the key
            source = browser.new_context(viewport={"width": 1280, "height": 860},
                                         locale="ja-JP")
            other = source.new_page()
            other.goto(f"{base}/login")
            other.fill("input[name=login]", "partner-admin")
            other.fill("input[name=password]", PASSWORD)
            other.click("button[type=submit].primary")
            expect(other.locator("h1")).to_contain_text("partner 株式会社")
            other.click("nav.menu a[href='/send']")
            other.fill("#copy-key", key)
            other.click("#send-button")
            expect(other.locator("#sent")).to_contain_text("client-a")
            other.screenshot(path=str(shots / "05-send.png"))
            source.close()

            # back in the target: the inbox, the plan, approve
            page.click("nav.menu a[href='/inbox']")
            expect(page.locator("td.state-pending")).to_have_count(1)
            page.screenshot(path=str(shots / "06-inbox.png"))
            page.click("table a[href^='/inbox/']")
            expect(page.locator("table.plan")).to_contain_text("年賀状")
            page.screenshot(path=str(shots / "07-plan.png"), full_page=True)
            page.click("#approve")
            expect(page.locator("#transfer-status")).to_have_text("applied")

            # the customer page shows the new labels
            page.goto(f"{base}/customers?q=サトウ")
            page.screenshot(path=str(shots / "08-customer-search.png"))
            page.click(f"a[href='/customers/{customer}']")
            boxes = page.locator(".checked-boxes")
            expect(boxes).to_contain_text("年賀状")
            expect(boxes).to_contain_text("暑中見舞")
            expect(page.locator("dt.memo")).to_contain_text("ご要望")
            page.screenshot(path=str(shots / "09-customer.png"))
            page.goto(f"{base}/pop?phone=0355550101")
            expect(page.locator("#customer-name")).to_contain_text("佐藤 花子")
            page.screenshot(path=str(shots / "10-screen-pop.png"))
            page.goto(f"{base}/config")
            page.screenshot(path=str(shots / "11-config-editor.png"))
            page.goto(f"{base}/config/history?diff_from=1&diff_to=2")
            page.screenshot(path=str(shots / "12-history-diff.png"))
            # one click in the header switches to the other tenant
            page.click("button.tenant[data-tenant=client-b]")
            expect(page.locator("button.tenant.selected")).to_have_attribute(
                "data-tenant", "client-b")
            target.close()
        finally:
            browser.close()
