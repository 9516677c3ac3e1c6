"""SQLite: WAL bytes one single-record create writes, and which tables they belong to.

Run on demand (not part of the test suite)::

    .venv/bin/python bench/bench_wal.py                   # tenants of 0, 1,000, 20,000 contacts
    .venv/bin/python bench/bench_wal.py --sizes 0,5000 --creates 30

For each tenant size a fresh SQLite database gets a tenant seeded with that many
sample contacts (``seed_contacts``); then ``--creates`` single contacts are created
through ``records.create``, one transaction each (the contact, its change-log row,
tallies, audit and search index, as the API does). Before each create the WAL is
checkpointed and truncated, so the WAL file's size afterwards is exactly what that
create wrote: a 32-byte header plus one 24-byte frame header and one 4 KiB page per
page changed. The frames' page numbers are mapped to the table or index owning the
page (SQLite's ``dbstat``), which says where the bytes go.

A single create appends to the search index's pending log; every
``FOLD_AT + 1``-th create folds the log into the index's sets. The default
``--creates`` is one such cycle: the table gives the creates that only log (median,
min-max), the create that folds, and the mean over the cycle (what a create costs
amortised). Then a twin tenant gets the same contacts, and ``FOLD_AT`` more
single creates go to each: the log of the first is full, the twin's is folded.
``--searches`` searches of each of a few terms (first page and exact total, own
transaction, as the API does) are timed in turn in both: the medians and their
ratio are what reading a full log costs a search.
"""

from __future__ import annotations

import argparse
import base64
import os
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the bench package; provisioner as installed when it is
    sys.path.append(str(ROOT))

from sqlalchemy import text  # noqa: E402

import bench.bench_core as core  # noqa: E402
from provisioner.db import migrate  # noqa: E402
from provisioner.db.engine import make_engine  # noqa: E402
from provisioner.security.keystore import MasterKey  # noqa: E402
from provisioner.services import actors, tenants  # noqa: E402
from provisioner.services.context import Provisioner  # noqa: E402
from provisioner.services.crm import records, search, search_index, seed  # noqa: E402
from provisioner.services.crm.search import Query  # noqa: E402
from provisioner.services.crm.search_index import pending  # noqa: E402
from provisioner.services.transaction import Context  # noqa: E402

PAGE_SIZE = int(os.environ.get("BENCH_SQLITE_PAGE_SIZE", "0"))
FRAME_HEADER = 24
WAL_HEADER = 32
#: searched with the pending log full and empty: grams, LIKE-verified and chained terms
TERMS = ("田", "田中", "太郎", "ソクテイ", "03-5555", "example")


def _frames(wal: Path) -> list[int]:
    """Page numbers of the WAL's frames, in order."""
    data = wal.read_bytes()
    if len(data) < WAL_HEADER:
        return []
    page_size = struct.unpack(">I", data[8:12])[0]
    out = []
    for at in range(WAL_HEADER, len(data) - FRAME_HEADER + 1, FRAME_HEADER + page_size):
        out.append(struct.unpack(">I", data[at : at + 4])[0])
    return out


def _owners(path: Path) -> dict[int, str]:
    conn = sqlite3.connect(path)
    try:
        return {int(p): str(n) for n, p in conn.execute("SELECT name, pageno FROM dbstat")}
    finally:
        conn.close()


def _person(n: int) -> dict[str, str]:
    return {
        "name": f"測定 太郎{n}",
        "kana": "ソクテイ タロウ",
        "phone": f"03-5555-{n:04d}",
        "email": f"t{n}@example.jp",
    }


@dataclass
class Measured:
    #: KiB of WAL per create, in order (the last of a cycle folds the log)
    kib: list[float]
    owners: Counter[str]
    #: median ms of a search with the log full, empty
    full_ms: float
    empty_ms: float


def _tenant(ctx: Context, slug: str) -> int:
    return actors.resolve(ctx, "admin" if slug == "acme" else f"{slug}-admin", slug).tenant_id


def _search_ms(app: Provisioner, searches: int) -> tuple[float, float]:
    """Median ms of a search in acme (the log full) and in twin (empty), taken in turn so
    that the machine's load weighs on both alike."""
    times: dict[str, list[float]] = {"acme": [], "twin": []}
    for _ in range(searches):
        for term in TERMS:
            for login, slug in (("admin", "acme"), ("twin-admin", "twin")):
                start = time.perf_counter()
                with app.transaction() as ctx:
                    search.search(ctx, actors.resolve(ctx, login, slug), Query(q=term))
                times[slug].append(time.perf_counter() - start)
    return statistics.median(times["acme"]) * 1000, statistics.median(times["twin"]) * 1000


def measure(size: int, creates: int, searches: int) -> Measured:
    home = Path(tempfile.mkdtemp(prefix="bench-wal-"))
    os.environ["PROVISIONER_HOME"] = str(home)
    path = home / "p.db"
    if PAGE_SIZE:  # an experiment: the database's page size, set before its first table
        raw = sqlite3.connect(path)
        raw.execute(f"PRAGMA page_size={PAGE_SIZE}")
        raw.execute("VACUUM")
        raw.close()
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    app = Provisioner(engine, master_key=MasterKey(bytes(range(32))))
    with app.transaction() as ctx:
        tenants.create(ctx, "acme", name="acme", plan="professional")
        tenants.add_user(ctx, "admin", tenant_slug="acme", role="admin")
    if size:
        with app.transaction() as ctx:
            seed.seed_contacts(ctx, actors.resolve(ctx, "admin", "acme"), size, seed=1)
    wal = path.with_name(path.name + "-wal")
    kib: list[float] = []
    owners: Counter[str] = Counter()
    for n in range(creates):
        engine.dispose()  # no pooled connection holds a snapshot: the checkpoint is complete
        raw = sqlite3.connect(path)
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw.close()
        page_map = _owners(path)
        with app.transaction() as ctx:
            records.create(ctx, actors.resolve(ctx, "admin", "acme"), "contact", _person(n))
        kib.append(wal.stat().st_size / 1024)
        frames = _frames(wal)
        owners.update(page_map.get(p, "(new page)") for p in frames)
    full_ms = empty_ms = 0.0
    if searches:  # a twin tenant of the same contacts, its log empty; this one's full
        with app.transaction() as ctx:
            tenants.create(ctx, "twin", name="twin", plan="professional")
            tenants.add_user(ctx, "twin-admin", tenant_slug="twin", role="admin")
        if size:
            with app.transaction() as ctx:
                seed.seed_contacts(ctx, actors.resolve(ctx, "twin-admin", "twin"), size, seed=1)
        with app.transaction() as ctx:
            search_index.fold(ctx.session.connection(), _tenant(ctx, "acme"))
        for login, slug in (("admin", "acme"), ("twin-admin", "twin")):
            for n in range(creates, creates + pending.FOLD_AT):
                with app.transaction() as ctx:
                    records.create(ctx, actors.resolve(ctx, login, slug), "contact", _person(n))
        with app.transaction() as ctx:
            search_index.fold(ctx.session.connection(), _tenant(ctx, "twin"))
            held = ctx.session.connection().scalar(
                text("SELECT count(*) FROM crm_search_pending WHERE tenant_id = :t"),
                {"t": _tenant(ctx, "acme")},
            )
            assert held == pending.FOLD_AT, held
        full_ms, empty_ms = _search_ms(app, searches)
    engine.dispose()
    return Measured(kib, owners, full_ms, empty_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,1000,20000")
    parser.add_argument("--creates", type=int, default=pending.FOLD_AT + 1)
    parser.add_argument("--searches", type=int, default=20)
    args = core.parse_args(parser)
    os.environ.setdefault("PROVISIONER_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
    print(f"load average {os.getloadavg()[0]:.2f}; the log is folded past {pending.FOLD_AT} rows")
    print(
        "| tenant size | WAL per logging create: median (min-max) | folding create "
        "| mean per create | search, log full / empty (median) | pages by table (per create) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for size in (int(s) for s in args.sizes.split(",")):
        m = measure(size, args.creates, args.searches)
        cycle = pending.FOLD_AT + 1
        logging = [k for i, k in enumerate(m.kib) if (i + 1) % cycle]
        folding = [k for i, k in enumerate(m.kib) if not (i + 1) % cycle]
        top = ", ".join(
            f"{name} {count / args.creates:.1f}" for name, count in m.owners.most_common(6)
        )
        fold = f"{statistics.median(folding):.0f} KiB" if folding else "-"
        ratio = (
            f"{m.full_ms:.2f} / {m.empty_ms:.2f} ms = {m.full_ms / m.empty_ms:.2f}x"
            if m.empty_ms
            else "-"
        )
        print(
            f"| {size:,} | {statistics.median(logging):.0f} KiB "
            f"({min(logging):.0f}-{max(logging):.0f}) | {fold} "
            f"| {statistics.mean(m.kib):.0f} KiB | {ratio} | {top} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
