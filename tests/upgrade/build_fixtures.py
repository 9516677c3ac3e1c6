"""Build the upgrade fixtures from the previous release's code (run by hand, output committed).

    python tests/upgrade/build_fixtures.py [COMMIT]     # default: PREVIOUS_RELEASE below

The commit's tree is extracted with ``git archive`` into a temporary directory and
its own code creates and seeds (``seed_previous.py``, copied in) two databases:

* ``fixtures/previous.sqlite.gz`` (SQLite, WAL folded in, vacuumed, gzipped);
* ``fixtures/previous.pg.sql.gz`` (PostgreSQL, ``pg_dump --inserts`` of a scratch
  database on ``PROVISIONER_TEST_PG_URL``'s server, loaded back by the test with
  psycopg: no ``psql`` needed);
* ``fixtures/SOURCE.json``: the commit, its subject, when and how the files were made.

``tests/upgrade/test_previous_release.py`` upgrades both to this tree's head.
There are no release tags: the previous release is the last commit that landed on
main before this one's release work (update PREVIOUS_RELEASE at each release).
"""

from __future__ import annotations

import base64
import datetime
import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PREVIOUS_RELEASE = "44a7a0a"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIXTURES = HERE / "fixtures"
#: the master key the fixtures' signing keys are sealed with (the test suite's)
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
PG_URL = os.environ.get(
    "PROVISIONER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _extract(commit: str, into: Path) -> str:
    full = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", commit], check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", full], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.copy(HERE / "seed_previous.py", into / "seed_previous.py")
    return full


def _seed(src: Path, url: str, home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    env |= {
        "PYTHONPATH": str(src),
        "PROVISIONER_HOME": str(home),
        "PROVISIONER_MASTER_KEY": MASTER_KEY,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    subprocess.run(
        [sys.executable, "seed_previous.py", url, str(home)], cwd=src, env=env, check=True
    )


def _sqlite(src: Path, work: Path) -> None:
    path = work / "previous.sqlite"
    _seed(src, f"sqlite:///{path}", work / "home-sqlite")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("VACUUM")
    conn.close()
    (FIXTURES / "previous.sqlite.gz").write_bytes(gzip.compress(path.read_bytes(), 9, mtime=0))


def _postgres(src: Path, work: Path) -> None:
    name = f"provisioner_fixture_{os.getpid()}"
    admin_url = make_url(PG_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin_url.set(database=name)
        _seed(src, url.render_as_string(hide_password=False), work / "home-pg")
        dump = subprocess.run(
            [
                "pg_dump",
                "--inserts",
                "--rows-per-insert=50",
                "--no-owner",
                "--no-privileges",
                "--no-comments",
                "-h",
                url.host or "127.0.0.1",
                "-p",
                str(url.port or 5432),
                "-U",
                url.username or "postgres",
                name,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        # psql-only lines (\\restrict with its random key) go: the test loads it with psycopg
        kept = "".join(line for line in dump.splitlines(keepends=True) if not line.startswith("\\"))
        (FIXTURES / "previous.pg.sql.gz").write_bytes(gzip.compress(kept.encode(), 9, mtime=0))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main(commit: str) -> None:
    FIXTURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="provisioner-previous-") as tmp:
        work = Path(tmp)
        src = work / "src"
        src.mkdir()
        full = _extract(commit, src)
        subject = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%s", full],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        _sqlite(src, work)
        _postgres(src, work)
    (FIXTURES / "SOURCE.json").write_text(
        json.dumps(
            {
                "commit": full,
                "subject": subject,
                "built": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "how": "python tests/upgrade/build_fixtures.py " + commit,
                "seeded_by": "tests/upgrade/seed_previous.py, run with that commit's code",
                "master_key": "tests/conftest.py MASTER_KEY (bytes 0..31)",
                "files": {
                    "previous.sqlite.gz": "SQLite, gzip",
                    "previous.pg.sql.gz": "pg_dump --inserts, psql lines removed, gzip",
                },
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    for path in sorted(FIXTURES.iterdir()):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else PREVIOUS_RELEASE)
