"""Storage details that performance depends on."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from provisioner.db.engine import WAL_AUTOCHECKPOINT_PAGES
from provisioner.services.context import Provisioner


def test_large_columns_are_compressed_with_lz4_on_postgresql(app: Provisioner) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("TOAST compression is a PostgreSQL feature")
    with app.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.relname, a.attname, a.attcompression FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relname IN ('transfers', 'config_versions') "
            "AND a.attname IN ('envelope', 'incoming', 'plan', 'document')")).all()
    assert sorted((r[0], r[1], r[2]) for r in rows) == [
        ("config_versions", "document", "l"), ("transfers", "envelope", "l"),
        ("transfers", "incoming", "l"), ("transfers", "plan", "l")]


def test_sqlite_checkpoints_the_wal_every_32_mb(app: Provisioner) -> None:
    if app.engine.dialect.name != "sqlite":
        pytest.skip("WAL checkpoints are an SQLite setting")
    with app.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == \
            WAL_AUTOCHECKPOINT_PAGES == 8192
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
