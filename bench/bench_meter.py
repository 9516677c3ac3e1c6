"""The metered screen pop in-process, as the API lookup with a call id runs it, against
the number of calls the tenant has recorded.

    python -m bench.bench_meter [--calls 0,20000] [--n 300] [--db sqlite|postgresql|both]

Per database and history size: a fresh database (PostgreSQL: its own database, the
application as a runtime role that is neither superuser nor BYPASSRLS), a tenant
with one customer, ``calls`` calls loaded with one INSERT (and the maintained
figures rebuilt where the tree has them), then ``n`` screen pops of new call ids,
each in one transaction (the card, the quota check, the call's price and its
record), as the route does. Prints
the median and p90 wall-clock ms and the CPU ms of this process per pop.

Run it with ``PYTHONPATH`` set to each tree to compare two trees in one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from provisioner.clock import FrozenClock, parse_instant
from provisioner.db import migrate, roles
from provisioner.db.engine import make_engine
from provisioner.security.keystore import MasterKey
from provisioner.services import actors
from provisioner.services.context import Provisioner
from provisioner.services.crm import records
from provisioner.services.provisioning import metering
from tests.support import World

PG = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ROLE = "provisioner_bench_runtime"
START = parse_instant("2026-11-24T01:00:00Z")


def _database(kind: str, tag: str) -> tuple[str, str, Any]:
    """(owner url, application url, cleanup)."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="bench_meter_")
        url = f"sqlite:///{folder}/p.db"
        return url, url, lambda: None
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    name = f"bench_meter_{tag}_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    owner = make_url(PG).set(database=name)
    runtime = owner.set(username=ROLE, password=None)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return owner.render_as_string(False), runtime.render_as_string(False), drop


def run(kind: str, calls: int, n: int) -> dict[str, float]:
    owner_url, app_url, drop = _database(kind, str(calls))
    try:
        owner = make_engine(owner_url)
        migrate.upgrade(owner)
        if kind == "postgresql":
            with owner.begin() as conn:
                roles.ensure_role(conn, ROLE, login=True)
                roles.grant_runtime(conn, ROLE)
        clock = FrozenClock(START)
        master = MasterKey(bytes(range(32)))
        app = Provisioner(make_engine(app_url), master_key=master, clock=clock)
        world = World(app)
        world.tenant("bench", users={"op": "general"})
        with app.transaction() as ctx:
            admin = actors.resolve(ctx, "bench-admin", "bench")
            records.create(ctx, admin, "contact", {"name": "山田 花子", "phone": "03-1111-1111"})
        tenant_id = world.tenant_row("bench").id
        with owner.begin() as conn:  # the history, loaded around the services
            conn.execute(
                text(
                    "INSERT INTO call_records (tenant_id, at, number, classification, in_hours, "
                    "charge_jpy, recorded_by, call_ref, contact_note) "
                    "SELECT :t, :at, '0311111111', 'customer', true, 30, 'op', "
                    "'old-' || g, CASE WHEN g % 3 = 0 THEN '折り返し希望' END FROM "
                    + (
                        "generate_series(1, :n) g"
                        if kind == "postgresql"
                        else "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s "
                        "WHERE g < :n) SELECT g FROM s)"
                    )
                ),
                {
                    "t": tenant_id,
                    "at": START if kind == "postgresql" else f"{START:%Y-%m-%d %H:%M:%S.%f}",
                    "n": calls,
                },
            )
            try:
                from provisioner.services.provisioning import call_usage
            except ImportError:  # a tree without maintained call figures
                pass
            else:
                call_usage.rebuild(conn, tenant_id)
            if kind == "postgresql":
                conn.execute(text("ANALYZE"))
        owner.dispose()

        def pop(i: int) -> None:
            with app.transaction() as ctx:
                actor = actors.resolve(ctx, "op", "bench")
                metering.screen_pop(ctx, actor, "03-1111-1111", call_ref=f"new-{i}")

        for i in range(30):
            pop(-1 - i)
        walls, cpus = [], []
        for i in range(n):
            w, c = time.perf_counter(), time.process_time()
            pop(i)
            cpus.append(time.process_time() - c)
            walls.append(time.perf_counter() - w)
        walls.sort()
        app.engine.dispose()
        return {
            "median_ms": statistics.median(walls) * 1000,
            "p90_ms": walls[int(len(walls) * 0.9)] * 1000,
            "cpu_ms": statistics.median(cpus) * 1000,
        }
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", default="0,20000")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--db", default="both")
    from bench import bench_core  # which implementation is measured; refuses the fallback

    args = bench_core.parse_args(parser)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    import provisioner

    tree = os.path.dirname(os.path.dirname(provisioner.__file__))
    for kind in kinds:
        for calls in (int(c) for c in args.calls.split(",")):
            r = run(kind, calls, args.n)
            print(
                f"{tree}\t{kind}\t{calls}\tmedian {r['median_ms']:.3f} ms\t"
                f"p90 {r['p90_ms']:.3f} ms\tcpu {r['cpu_ms']:.3f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
