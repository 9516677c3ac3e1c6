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
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the bench package; provisioner as installed when it is
    sys.path.append(str(ROOT))

import bench.bench_core as core  # noqa: E402
from provisioner.db import migrate  # noqa: E402
from provisioner.db.engine import make_engine  # noqa: E402
from provisioner.security.keystore import MasterKey  # noqa: E402
from provisioner.services import actors, tenants  # noqa: E402
from provisioner.services.context import Provisioner  # noqa: E402
from provisioner.services.crm import records, seed  # noqa: E402

PAGE_SIZE = int(os.environ.get("BENCH_SQLITE_PAGE_SIZE", "0"))
FRAME_HEADER = 24
WAL_HEADER = 32


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


def measure(size: int, creates: int) -> tuple[list[float], Counter[str]]:
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
            records.create(
                ctx,
                actors.resolve(ctx, "admin", "acme"),
                "contact",
                {
                    "name": f"測定 太郎{n}",
                    "kana": "ソクテイ タロウ",
                    "phone": f"03-5555-{n:04d}",
                    "email": f"t{n}@example.jp",
                },
            )
        kib.append(wal.stat().st_size / 1024)
        frames = _frames(wal)
        owners.update(page_map.get(p, "(new page)") for p in frames)
    engine.dispose()
    return kib, owners


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,1000,20000")
    parser.add_argument("--creates", type=int, default=20)
    args = core.parse_args(parser)
    os.environ.setdefault("PROVISIONER_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| tenant size | WAL per create: median (min-max) | pages by table (per create) |")
    print("| --- | --- | --- |")
    for size in (int(s) for s in args.sizes.split(",")):
        kib, owners = measure(size, args.creates)
        top = ", ".join(
            f"{name} {count / args.creates:.1f}" for name, count in owners.most_common(6)
        )
        print(
            f"| {size:,} | {statistics.median(kib):.0f} KiB ({min(kib):.0f}-{max(kib):.0f}) "
            f"| {top} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
