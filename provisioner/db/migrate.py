"""Schema migrations (Alembic), run programmatically: ``provisioner init``.

    >>> from provisioner.db.engine import make_engine
    >>> upgrade(make_engine("sqlite://"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def heads() -> set[str]:
    """The newest revision of every migration branch (feature areas may branch)."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


#: rebuilds derived data (index, counts) after the migrations named it (see :func:`upgrade`)
Rebuild = Callable[[Connection, set[str]], None]


def upgrade(engine: Engine, revision: str = "heads", *,
            rebuild: Rebuild | None = None) -> set[str]:
    """Migrate; the derived data the applied migrations left to rebuild (their ``rebuilds``).

    A migration creates tables and moves data; it runs no code of the package
    (``tests/test_architecture.py``), so an old migration behaves as when it was
    written. A table of derived data (the search index, the CRM counts) is
    created empty and named in the script's ``rebuilds``; ``rebuild(conn,
    names)`` -- the composition root's, with today's code on today's schema --
    fills it in the same transaction, after the last migration.
    """
    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    with engine.begin() as conn:
        before = set(MigrationContext.configure(conn).get_current_heads())
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        after = set(MigrationContext.configure(conn).get_current_heads())
        applied = _lineage(script, after) - _lineage(script, before)
        names = {name for rev in applied
                 for name in getattr(script.get_revision(rev).module, "rebuilds", ())}
        if names and rebuild is not None:
            rebuild(conn, names)
    return names


def _lineage(script: ScriptDirectory, heads: Iterable[str]) -> set[str]:
    """Every revision up to ``heads`` (what a database at those heads has applied)."""
    heads = tuple(heads)
    if not heads:
        return set()
    return {r.revision for r in script.iterate_revisions(heads, "base") if r is not None}
