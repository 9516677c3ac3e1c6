"""Storage details that performance depends on."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from provisioner.db.engine import WAL_AUTOCHECKPOINT_PAGES, make_engine
from provisioner.security.keystore import MasterKey
from provisioner.services import actors
from provisioner.services.context import Provisioner
from provisioner.services.crm import records
from tests.conftest import MASTER_KEY
from tests.support import World


def test_large_columns_are_compressed_with_lz4_on_postgresql(app: Provisioner) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("TOAST compression is a PostgreSQL feature")
    with app.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, a.attname, a.attcompression FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid "
                "WHERE c.relname IN ('transfers', 'config_documents') "
                "AND a.attname IN ('envelope', 'plan', 'body')"
            )
        ).all()
    assert sorted((r[0], r[1], r[2]) for r in rows) == [
        ("config_documents", "body", "l"),
        ("transfers", "envelope", "l"),
        ("transfers", "plan", "l"),
    ]


def test_sqlite_checkpoints_the_wal_every_32_mb(app: Provisioner) -> None:
    if app.engine.dialect.name != "sqlite":
        pytest.skip("WAL checkpoints are an SQLite setting")
    with app.engine.connect() as conn:
        assert (
            conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            == WAL_AUTOCHECKPOINT_PAGES
            == 8192
        )
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def _wal_high_water(db_url: str, creates: int) -> int:
    """The largest size the WAL file reaches over ``creates`` single-contact creates."""
    engine = make_engine(db_url)
    app = Provisioner(engine, master_key=MasterKey(MASTER_KEY))
    World(app).tenant("acme")
    wal = Path(make_url(db_url).database or "").with_name("provisioner.db-wal")
    high = 0
    for n in range(creates):
        with app.transaction() as ctx:
            actor = actors.resolve(ctx, "acme-admin", "acme")
            records.create(
                ctx,
                actor,
                "contact",
                {"name": f"佐藤 {n}", "kana": "サトウ", "phone": f"03-2222-{n:04d}"},
            )
        high = max(high, wal.stat().st_size)
    engine.dispose()
    return high


def test_a_small_wal_setting_keeps_the_sqlite_wal_small(
    db_url: str, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROVISIONER_SQLITE_WAL_MB=1: checkpoints every MB keep the WAL file under 2 MB
    (the journal_size_limit), where the default lets it grow with every create."""
    if not db_url.startswith("sqlite"):
        pytest.skip("an SQLite setting")
    monkeypatch.setenv("PROVISIONER_SQLITE_WAL_MB", "1")
    assert _wal_high_water(db_url, 80) <= 2 * 1024 * 1024


def test_the_default_wal_grows_until_32_mb(db_url: str, env: None) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("an SQLite setting")
    assert _wal_high_water(db_url, 80) > 3 * 1024 * 1024
