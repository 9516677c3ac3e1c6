"""Keys out of argv, private database files (issue 11): ``send --key-stdin``; a new SQLite
database file is created 0600."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from sqlalchemy import text

from provisioner.cli.main import cli
from provisioner.db.engine import make_engine
from tests.security.test_cli_contract import Cli, run  # noqa: F401  (the fixture)


def test_send_reads_the_key_from_stdin(run: Cli) -> None:  # noqa: F811
    """Threat: ``--key KEY`` shows the key to every user of the machine (ps) and keeps it in
    shell history; ``--key-stdin`` reads it from standard input instead."""
    key = run.json("key", "generate", "-t", "client", "--as", "client-admin")["key"]
    argv = [
        "--db",
        run.db_url,
        "--json",
        "send",
        "-t",
        "partner",
        "--as",
        "partner-admin",
        "--key-stdin",
    ]
    result = run.runner.invoke(cli, argv, input=key + "\n")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "pending"
    assert key not in " ".join(argv)


def test_send_needs_exactly_one_way_to_give_the_key(run: Cli) -> None:  # noqa: F811
    both = run.run(
        "send", "-t", "partner", "--as", "partner-admin", "--key", "x", "--key-stdin", code=1
    )
    assert "exactly one of --key-stdin or --key" in both.stderr
    run.run("send", "-t", "partner", "--as", "partner-admin", code=1)
    empty = run.runner.invoke(
        cli,
        ["--db", run.db_url, "send", "-t", "partner", "--as", "partner-admin", "--key-stdin"],
        input="",
    )
    assert empty.exit_code == 1
    assert "no copy key on standard input" in empty.stderr


def test_new_sqlite_database_file_is_private(tmp_path: Path) -> None:
    """Threat: the database (sealed keys, password hashes, customers) created world-readable
    under the usual umask 022."""
    path = tmp_path / "fresh.db"
    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{path}")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        for name in ("fresh.db", "fresh.db-wal", "fresh.db-shm"):
            file = tmp_path / name
            if file.exists():
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, name
        with engine.connect() as conn:
            assert conn.execute(text("SELECT x FROM t")).scalar() == 1
        engine.dispose()
    finally:
        os.umask(old)


def test_existing_database_file_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    os.chmod(path, 0o640)
    make_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
