"""Library trigram indexes against the positional chains, for search terms of 3+ characters.

Issue 14 asks whether PostgreSQL's ``pg_trgm`` (a GIN index, ``gin_trgm_ops``) and
SQLite's FTS5 ``trigram`` tokenizer answer a partial-match term of three or more
characters as fast as the custom index (``search_index``: grams, positioned
trigrams, LIKE verification). SQLite: the kept database of ``bench_crm.py --keep`` (or
``bench_workflows``), read, never changed: the FTS5 table is built in a separate
attached file over the search texts of its largest tenant. PostgreSQL: a database
of its own (``library_bench_<N>``, seeded by ``seed.seed_contacts`` on the first run
and kept); the GIN index is built over a scratch copy of the tenant's search texts,
dropped afterwards::

    .venv/bin/python bench/bench_crm.py --keep --contacts 1000000   # once: SQLite data
    .venv/bin/python bench/bench_library_index.py --contacts 1000000

For each term (drawn as ``bench_crm`` draws them: surnames, kana, companies, wards,
towns, phone and e-mail digits -- Japanese text included) of 3 and of 4+ characters:
the exact total and first page of 50 ids from ``search_index.page`` (the chains),
and the same from the library index (``MATCH '"term"'`` on FTS5, ``LIKE '%term%'``
on the GIN-indexed copy). Both answers must be identical; medians and p95 are
printed as a Markdown table (docs/performance.md keeps the measured one).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy import Connection, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the bench package; provisioner as installed when it is
    sys.path.append(str(ROOT))

import bench.bench_core as core  # noqa: E402
from bench.bench_crm import (  # noqa: E402
    make_app,
    pct,
    query_pools,
    seed_tenant,
    tenant,
)
from provisioner.services.crm import search_index  # noqa: E402
from provisioner.services.crm.text import search_key  # noqa: E402

CLASSES = ("3", "4+")
Answer = tuple[int, list[int]]


def _big_tenant(conn: Connection) -> int:
    """The tenant with the most records (``big`` of bench_crm, ``crm-big`` of bench_workflows)."""
    found = conn.scalar(
        text(
            "SELECT tenant_id FROM crm_tallies WHERE name = 'records' "
            "AND value = '' ORDER BY n DESC LIMIT 1"
        )
    )
    if found is None:
        sys.exit("no contacts: seed the database with bench_crm.py --keep first")
    return int(found)


def _timed(run: Callable[[], Answer]) -> tuple[float, Answer]:
    started = time.perf_counter()
    answer = run()
    return time.perf_counter() - started, answer


def _chains(conn: Connection, tenant_id: int, key: str) -> Answer:
    return search_index.page(conn, tenant_id, [key], "all", 0, 50)


def _like(key: str) -> str:
    return "%" + key.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


class SQLiteLibrary:
    """FTS5 ``trigram`` over the big tenant's search texts, in an attached file."""

    def __init__(self, conn: Connection, tenant_id: int) -> None:
        self.conn = conn
        self.path = Path(tempfile.gettempdir()) / f"bench_fts5_{os.getpid()}.db"
        conn.exec_driver_sql(f"ATTACH DATABASE '{self.path}' AS lib")
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE lib.fts USING fts5(search_text, tokenize = 'trigram')"
        )
        started = time.perf_counter()
        conn.execute(
            text(
                "INSERT INTO lib.fts (rowid, search_text) SELECT id, search_text "
                "FROM crm_contacts WHERE tenant_id = :t ORDER BY id"
            ),
            {"t": tenant_id},
        )
        conn.commit()
        self.build = time.perf_counter() - started
        self.size = self.path.stat().st_size

    def answer(self, key: str) -> Answer:
        phrase = '"' + key.replace('"', '""') + '"'
        total = self.conn.scalar(
            text("SELECT count(*) FROM lib.fts WHERE fts MATCH :q"), {"q": phrase}
        )
        ids = list(
            self.conn.scalars(
                text("SELECT rowid FROM lib.fts WHERE fts MATCH :q ORDER BY rowid LIMIT 50"),
                {"q": phrase},
            )
        )
        return int(total or 0), ids

    def close(self) -> None:
        self.conn.rollback()
        self.conn.exec_driver_sql("DETACH DATABASE lib")
        self.path.unlink(missing_ok=True)


class PostgresLibrary:
    """``pg_trgm`` GIN over a scratch copy of the big tenant's search texts."""

    TABLE = "bench_trgm_probe"

    def __init__(self, conn: Connection, tenant_id: int) -> None:
        self.conn = conn
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.TABLE}")
        conn.execute(
            text(
                f"CREATE TABLE {self.TABLE} AS SELECT id, search_text "
                "FROM crm_contacts WHERE tenant_id = :t"
            ),
            {"t": tenant_id},
        )
        conn.exec_driver_sql(f"ALTER TABLE {self.TABLE} ADD PRIMARY KEY (id)")
        conn.commit()
        started = time.perf_counter()
        conn.exec_driver_sql(
            f"CREATE INDEX {self.TABLE}_trgm ON {self.TABLE} USING gin (search_text gin_trgm_ops)"
        )
        conn.commit()
        self.build = time.perf_counter() - started
        conn.exec_driver_sql(f"ANALYZE {self.TABLE}")
        conn.commit()
        self.size = int(conn.scalar(text(f"SELECT pg_relation_size('{self.TABLE}_trgm')")) or 0)

    def answer(self, key: str) -> Answer:
        pattern = {"p": _like(key)}
        total = self.conn.scalar(
            text(f"SELECT count(*) FROM {self.TABLE} WHERE search_text LIKE :p ESCAPE '/'"), pattern
        )
        ids = list(
            self.conn.scalars(
                text(
                    f"SELECT id FROM {self.TABLE} WHERE search_text LIKE :p ESCAPE '/' "
                    "ORDER BY id LIMIT 50"
                ),
                pattern,
            )
        )
        return int(total or 0), ids

    def close(self) -> None:
        self.conn.rollback()
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.TABLE}")
        self.conn.commit()


def run(db: str, contacts: int, queries: int, seed_value: int) -> list[str]:
    if db == "sqlite":
        path = Path(tempfile.gettempdir()) / f"crm_bench_{contacts}.db"
        if not path.exists():
            sys.exit(f"{path} is missing: run bench_crm.py --keep --contacts {contacts}")
        url = f"sqlite:///{path}"
    else:  # a database of its own, seeded on the first run and kept for the next
        with core.kept_database("postgresql", f"library_bench_{contacts}", True) as (url, fresh):
            if fresh:
                started = time.perf_counter()
                app = make_app(url)
                seed_tenant(app, tenant(app, "big"), contacts, 3)
                app.engine.dispose()
                print(
                    f"[{db}] seeded {contacts:,} contacts in {time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    engine = create_engine(url)
    rows: list[str] = []
    with engine.connect() as conn:
        tenant_id = _big_tenant(conn)
        sample = [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT name, phone, mobile, email FROM crm_contacts WHERE tenant_id = :t "
                    "AND id % 997 = 0"
                ),
                {"t": tenant_id},
            )
        ]
        conn.rollback()
        library = (
            SQLiteLibrary(conn, tenant_id) if db == "sqlite" else PostgresLibrary(conn, tenant_id)
        )
        print(
            f"[{db}] library index built in {library.build:.1f} s, {library.size / 2**20:.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
        try:
            rng = random.Random(seed_value)
            pools = query_pools(rng, sample)
            for name in CLASSES:
                draws = [search_key(rng.choice(pools[name])) for _ in range(queries)]
                chains: list[float] = []
                library_times: list[float] = []
                mismatches = 0
                for key in draws[:5]:  # warm-up
                    _chains(conn, tenant_id, key)
                    library.answer(key)
                for key in draws:
                    seconds, ours = _timed(partial(_chains, conn, tenant_id, key))
                    chains.append(seconds)
                    seconds, theirs = _timed(partial(library.answer, key))
                    library_times.append(seconds)
                    mismatches += ours != theirs
                    conn.rollback()
                ratio = statistics.median(library_times) / statistics.median(chains)
                rows.append(
                    f"| {db} | {name} | {len(set(draws))} | "
                    f"{statistics.median(chains) * 1000:.2f} / {pct(chains, 95) * 1000:.2f} | "
                    f"{statistics.median(library_times) * 1000:.2f} / "
                    f"{pct(library_times, 95) * 1000:.2f} | {ratio:.2f}x | {mismatches} | "
                    f"{library.build:.0f} s, {library.size / 2**20:.0f} MiB |"
                )
                print(rows[-1], file=sys.stderr, flush=True)
        finally:
            library.close()
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=14)
    args = core.parse_args(parser)
    rows = [
        "| database | term | distinct terms | chains median / p95 ms | library median / "
        "p95 ms | library / chains | mismatches | library index build, size |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        rows += run(db, args.contacts, args.queries, args.seed)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
