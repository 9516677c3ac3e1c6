"""Schema migrations (Alembic), run programmatically: ``provisioner init``.

    >>> from provisioner.db.engine import make_engine
    >>> upgrade(make_engine("sqlite://"))  # doctest: +SKIP

A database whose schema revision this release does not know was migrated by a
newer release: :func:`refuse_newer` stops every command (``init`` included)
with both versions named, instead of Alembic's "Can't locate revision".

The released migration files are fingerprinted in ``migrations/released.sha256``
(``tests/test_operations_cli.py::test_no_released_migration_changes`` fails when
one changes). After adding a migration to a release, regenerate the manifest with::

    python -m provisioner.db.migrate --write-manifest
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from provisioner import __version__
from provisioner.errors import ConfigurationError

MIGRATIONS = Path(__file__).parent / "migrations"
MANIFEST = MIGRATIONS / "released.sha256"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def heads() -> set[str]:
    """The newest revision of every migration branch (feature areas may branch)."""
    return set(_script().get_heads())


def known() -> set[str]:
    """Every revision this release ships."""
    return {rev.revision for rev in _script().walk_revisions()}


def current(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def refuse_newer(revisions: set[str]) -> None:
    """Refuse a database migrated by a newer release (a revision this one does not know)."""
    unknown = sorted(revisions - known())
    if unknown:
        raise ConfigurationError(
            f"the database was migrated by a newer release of provisioner (schema revision "
            f"{', '.join(unknown)}); this release ({__version__}) knows revisions up to "
            f"{', '.join(sorted(heads()))}",
            hint="run the release that migrated it (or a newer one), or restore a backup "
            "taken before that upgrade; an older release cannot downgrade it",
        )


@dataclass(frozen=True)
class Outcome:
    """What :func:`upgrade` did: ``created``, ``upgraded`` or ``current``; ``rebuilt``: the
    derived data the applied migrations left to rebuild (their ``rebuilds``)."""

    action: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    rebuilt: frozenset[str] = field(default_factory=frozenset)


#: rebuilds derived data (index, counts) after the migrations named it (see :func:`upgrade`)
Rebuild = Callable[[Connection, set[str]], None]


@contextmanager
def _steps(progress: Callable[[str], None] | None) -> Iterator[None]:
    """Report each migration step (Alembic logs "Running upgrade A -> B, what")."""
    if progress is None:
        yield
        return
    logger = logging.getLogger("alembic.runtime.migration")

    class _Relay(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("Running upgrade"):
                assert progress is not None
                progress(message.removeprefix("Running upgrade ").strip())

    handler, level = _Relay(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


#: the oldest PostgreSQL the schema needs (``0014_tenant_keys``: ``ON DELETE SET NULL
#: (column)``); 15 is also the oldest release its project still supports
MIN_POSTGRESQL = 150000


def refuse_old_server(conn: Connection) -> None:
    """A PostgreSQL server older than :data:`MIN_POSTGRESQL` is refused before any step."""
    if conn.dialect.name != "postgresql":
        return
    version = int(conn.exec_driver_sql("SHOW server_version_num").scalar_one())
    if version < MIN_POSTGRESQL:
        raise ConfigurationError(
            f"this PostgreSQL server is version {version // 10000}; provisioner needs "
            f"{MIN_POSTGRESQL // 10000} or newer",
            hint="upgrade the server (pg_upgrade), then run 'provisioner init' again",
        )


def upgrade(
    engine: Engine,
    revision: str = "heads",
    *,
    rebuild: Rebuild | None = None,
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    """Migrate to ``revision`` in one transaction; ``progress`` hears of each step.

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
        refuse_newer(before)
        refuse_old_server(conn)
        cfg.attributes["connection"] = conn
        with _steps(progress):
            command.upgrade(cfg, revision)
        after = set(MigrationContext.configure(conn).get_current_heads())
        applied = _lineage(script, after) - _lineage(script, before)
        names = {
            name
            for rev in applied
            for name in getattr(script.get_revision(rev).module, "rebuilds", ())
        }
        if names and rebuild is not None:
            rebuild(conn, names)
    action = "created" if not before else "current" if before == after else "upgraded"
    return Outcome(action, tuple(sorted(before)), tuple(sorted(after)), frozenset(names))


def _lineage(script: ScriptDirectory, heads: Iterable[str]) -> set[str]:
    """Every revision up to ``heads`` (what a database at those heads has applied)."""
    heads = tuple(heads)
    if not heads:
        return set()
    return {r.revision for r in script.iterate_revisions(heads, "base") if r is not None}


# --------------------------------------------------------------------------- released files


def released_files() -> list[Path]:
    """The migration files of released schema revisions (``versions/00*.py``)."""
    return sorted((MIGRATIONS / "versions").glob("00*.py"))


def fingerprints() -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in released_files()}


def write_manifest() -> None:
    MANIFEST.write_text(
        "".join(f"{digest}  {name}\n" for name, digest in sorted(fingerprints().items()))
    )


def read_manifest() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in MANIFEST.read_text().splitlines():
        if line.strip():
            digest, name = line.split(None, 1)
            out[name.strip()] = digest
    return out


if __name__ == "__main__":  # python -m provisioner.db.migrate --write-manifest
    if sys.argv[1:] != ["--write-manifest"]:
        sys.exit("usage: python -m provisioner.db.migrate --write-manifest")
    write_manifest()
    print(f"wrote {MANIFEST}")
