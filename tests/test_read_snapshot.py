"""A read-only transaction reads one snapshot on both databases: a search that reads
the index's sets and its pending log in separate statements (or counts, then pages)
cannot mix two states of the data when a write commits in between."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from provisioner.db.models import Tenant
from provisioner.services import tenants
from provisioner.services.context import Context, Provisioner


def _count(ctx: Context) -> int:
    return int(ctx.session.scalar(select(func.count()).select_from(Tenant)) or 0)


def test_a_read_only_transaction_does_not_see_a_commit_made_during_it(app: Provisioner) -> None:
    with app.transaction() as ctx:
        tenants.create(ctx, "acme", name="ACME")
    with app.transaction(read_only=True) as reader:
        before = _count(reader)
        with app.transaction() as writer:  # another connection commits meanwhile
            tenants.create(writer, "beta", name="Beta")
        assert _count(reader) == before  # still the snapshot of the first read
    with app.transaction(read_only=True) as later:
        assert _count(later) == before + 1


def test_the_snapshot_isolation_does_not_stay_on_the_pooled_connection(app: Provisioner) -> None:
    """PostgreSQL: the next transaction on the same pooled connection is READ COMMITTED
    again (each statement sees the latest commits; the services' row locks rely on it)."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one isolation level for every transaction")
    show = text("SHOW transaction_isolation")
    with app.transaction(read_only=True) as reader:
        assert reader.session.scalar(show) == "repeatable read"
    with app.transaction() as ctx:
        assert ctx.session.scalar(show) == "read committed"
