"""CPU time of the rollout benchmark's timed part: this process plus, on PostgreSQL, the
server backends that served it (from ``/proc``, Linux; the server on this machine).

Wall time on a machine shared with other work varies with the load; the CPU time a
rollout costs the client and the server varies much less, so a comparison of two trees
taken under load uses it. Run it from the tree to measure (it imports that tree's
``bench/bench_rollout.py``), e.g. in turn from two checkouts::

    python bench/rollout_cpu.py --db both --tenants 1000 --repeat 3

Per workload and run: wall seconds, client CPU seconds, server CPU seconds; then the
medians and tenants per CPU second (client + server).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench import bench_rollout as br  # noqa: E402
from bench.bench_core import postgres_url, sqlite_url  # noqa: E402
from provisioner.services.provisioning import rollout  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _backend_cpu(app: Any) -> dict[int, float]:
    """CPU seconds so far of every server backend connected to the benchmark's database."""
    if app.engine.dialect.name != "postgresql":
        return {}
    with app.engine.connect() as conn:
        pids = conn.execute(
            text(
                # this connection too: the pool hands the rollout the same backends
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            )
        ).scalars()
        out = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.tenants
    spent: dict[str, float] = {}
    original = rollout.process

    def process(*a: Any, **k: Any) -> Any:  # the timed part's rollout.process, measured
        app = a[0]
        server = _backend_cpu(app)
        client = time.process_time()
        try:
            return original(*a, **k)
        finally:
            spent["client"] = time.process_time() - client
            after = _backend_cpu(app)
            spent["server"] = sum(cpu - server.get(pid, 0.0) for pid, cpu in after.items())

    rollout.process = process  # measured in place
    print(f"measuring {Path(str(rollout.__file__)).parents[3]}", flush=True)
    for backend in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        source = sqlite_url() if backend == "sqlite" else postgres_url("rollout_cpu_bench")
        with source as url:
            app = br.setup(url, n)
            run_no = 0
            for workload in br.WORKLOADS:
                rows = []
                for _ in range(args.repeat):
                    run_no += 1
                    wall, _ = br.one_run(app, n, run_no, workload == "distinct", False)
                    rows.append((wall, spent["client"], spent["server"]))
                    print(
                        f"{backend} ({workload}): run {run_no}: wall {wall:.3f} s, client CPU "
                        f"{spent['client']:.3f} s, server CPU {spent['server']:.3f} s",
                        flush=True,
                    )
                cpu = statistics.median(c + s for _, c, s in rows)
                wall = statistics.median(r[0] for r in rows)
                print(
                    f"{backend} ({workload}): median wall {wall:.3f} s, median CPU"
                    f" {cpu:.3f} s = {n / cpu:.0f} tenants per CPU second",
                    flush=True,
                )
            app.engine.dispose()


if __name__ == "__main__":
    main()
