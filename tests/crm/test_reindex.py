"""``provisioner reindex``: derived data computed by an older release is found and rebuilt.

The database is given what an older release left behind: a contact whose
search text still holds a deleted company's name (the bug fixed in this
release), a search index missing entries, a tally off by some, a stored size of
zero. ``--check`` reports each and changes nothing (exit 1); a rebuild corrects
them; a second check is clean (exit 0). Searching for the old company name
then finds nobody.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from provisioner.cli.main import cli
from provisioner.db.tenancy import set_tenant
from provisioner.services import actors, reindex
from provisioner.services.context import Provisioner
from provisioner.services.crm import records, search, tally
from provisioner.services.crm.search import Query
from tests.support import World


def _reindex(db_url: str, *args: str) -> tuple[int, list[dict[str, object]]]:
    result = CliRunner().invoke(cli, ["--json", "--db", db_url, "reindex", *args])
    assert result.exit_code in (0, 1), (result.output, result.exception)
    assert result.stdout, (result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)


def _matches(app: Provisioner, term: str) -> int:
    with app.transaction() as ctx:
        actor = actors.resolve(ctx, "acme-admin", "acme")
        return search.search(ctx, actor, Query(q=term)).total


def test_reindex_finds_and_rebuilds_what_an_older_release_computed(
    app: Provisioner, db_url: str, app_engines: None
) -> None:
    world = World(app)
    world.tenant("acme")
    world.tenant("beta")
    with app.transaction() as ctx:
        actor = actors.resolve(ctx, "acme-admin", "acme")
        company = records.create(ctx, actor, "company", {"name": "旧商事"}).record
        for n in range(30):
            records.create(
                ctx,
                actor,
                "contact",
                {
                    "name": f"山田 {n}",
                    "phone": f"03-1111-{n:04d}",
                    "company_id": company["id"] if n < 3 else None,
                },
            )
        records.delete_record(ctx, actor, "company", company["id"])
    assert _matches(app, "旧商事") == 0
    acme = world.tenant_row("acme").id

    with app.engine.begin() as conn:  # what an older release left behind
        set_tenant(conn, acme)
        conn.execute(
            text(
                "UPDATE crm_contacts SET search_text = search_text || :old "
                "WHERE tenant_id = :t AND id IN (SELECT min(id) FROM crm_contacts "
                "WHERE tenant_id = :t)"
            ),
            {"old": "\x1f旧商事", "t": acme},
        )
        conn.execute(
            text("DELETE FROM crm_search_grams WHERE tenant_id = :t AND gram = '山'"), {"t": acme}
        )
        conn.execute(
            text("UPDATE crm_tallies SET n = n + 5 WHERE tenant_id = :t AND name = 'records'"),
            {"t": acme},
        )
        conn.execute(
            text("UPDATE config_versions SET size_bytes = 0 WHERE tenant_id = :t"), {"t": acme}
        )

    code, reports = _reindex(db_url, "--all", "--check")
    assert code == 1
    by_tenant = {r["tenant"]: r for r in reports}
    assert by_tenant["beta"]["clean"] is True
    found = by_tenant["acme"]
    assert found["contacts"] == 30
    assert found["search_text"] == 1
    assert found["search_index"] > 0  # the removed gram, and the stale text's grams
    assert found["tallies"] == 1
    assert found["sizes"] == 1
    # a check changes nothing
    assert _reindex(db_url, "-t", "acme", "--check")[1][0] == found

    code, reports = _reindex(db_url, "-t", "acme")
    assert code == 0
    assert reports[0]["search_text"] == 1
    code, reports = _reindex(db_url, "--all", "--check")
    assert code == 0
    assert all(r["clean"] for r in reports)
    assert _matches(app, "旧商事") == 0
    assert _matches(app, "山") == 30
    with app.engine.begin() as conn:
        set_tenant(conn, acme)
        assert tally.stored(conn, acme) == tally.recount(conn, acme) != {}


def test_reindex_needs_a_tenant_or_all(app: Provisioner, db_url: str, app_engines: None) -> None:
    result = CliRunner().invoke(cli, ["--db", db_url, "reindex"])
    assert result.exit_code == 2
    assert "give either -t SLUG or --all" in result.output


def _init(db_url: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["--json", "--db", db_url, "init"])
    assert result.exit_code == 0, (result.output, result.exception)
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_init_rebuilds_derived_data_when_a_release_changed_how_it_is_computed(
    app: Provisioner, db_url: str, app_engines: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release that raises a derived-data version gets every tenant rebuilt by ``init``,
    with its note and each changed tenant's usage reported; once recorded, nothing again.
    A database whose numbers are newer than this release's keeps them."""
    world = World(app)
    world.tenant("acme")
    acme = world.tenant_row("acme").id
    first = _init(db_url)  # the test database was migrated without init: versions recorded
    assert first["action"] == "current"
    assert _init(db_url)["derived_data"] is None
    with app.engine.begin() as conn:  # the older release counted sizes differently
        set_tenant(conn, acme)
        conn.execute(
            text("UPDATE config_versions SET size_bytes = 1 WHERE tenant_id = :t"), {"t": acme}
        )
    assert _init(db_url)["derived_data"] is None  # same versions: no rebuild
    monkeypatch.setitem(reindex.VERSIONS, "usage", reindex.VERSIONS["usage"] + 1)
    monkeypatch.setitem(
        reindex.NOTES, ("usage", reindex.VERSIONS["usage"]), "stored sizes are counted anew"
    )
    done = _init(db_url)["derived_data"]
    assert isinstance(done, dict)
    assert done["stale"] == {
        "usage": {"from": reindex.VERSIONS["usage"] - 1, "to": reindex.VERSIONS["usage"]}
    }
    assert done["notes"] == ["stored sizes are counted anew"]
    [usage] = done["usage"]
    assert usage["tenant"] == "acme"
    assert usage["after"] > usage["before"]
    assert _reindex(db_url, "--all", "--check")[0] == 0
    assert _init(db_url)["derived_data"] is None

    with app.engine.begin() as conn:  # a newer release's numbers are left as they are
        conn.execute(text("UPDATE derived_data SET version = 99 WHERE name = 'search'"))
    assert _init(db_url)["derived_data"] is None
    with app.engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT version FROM derived_data WHERE name = 'search'")
            ).scalar_one()
            == 99
        )


def test_init_text_says_what_was_rebuilt_and_why(
    app: Provisioner, db_url: str, app_engines: None
) -> None:
    World(app).tenant("acme")
    with app.engine.begin() as conn:  # as a database from before the versions were kept
        conn.execute(text("DELETE FROM derived_data"))
    result = CliRunner().invoke(cli, ["--db", db_url, "init"])
    assert result.exit_code == 0, result.output
    assert (
        "rebuilt the derived data of 1 tenant(s) computed by an older release "
        "(derived-data versions search 0 -> 1, usage 0 -> 1)" in result.output
    )
    assert f"changed in this release: {reindex.NOTES[('usage', 1)]}" in result.output
    assert "[" in result.stderr
    assert "rebuilt the derived data of acme" in result.stderr
