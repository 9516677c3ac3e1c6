"""Rollout performance: one bundle to 1,000 tenants with the ``auto`` policy.

Run on demand (not part of the test suite)::

    .venv/bin/python bench/bench_rollout.py                  # SQLite and PostgreSQL, 3 runs
    .venv/bin/python bench/bench_rollout.py --db sqlite --tenants 200 --repeat 1
    .venv/bin/python bench/bench_rollout.py --profile        # also cProfile one run
    .venv/bin/python bench/bench_rollout.py --scale --tenants 10000   # storage per tenant

Setup (untimed): an HQ tenant and N target tenants (each with an admin) whose
admins registered HQ's key as a trusted publisher with policy ``auto``. Each
run: HQ changes one checkbox label and exports a bundle (untimed), then
``rollout.start`` + ``rollout.process`` deliver it to every target (timed):
verification of the bundle, per-target checks, plan, transfer, new
configuration version, audit events and status rows, in batches of one
transaction each (see ``provisioner/services/provisioning/rollout.py``).
From the second run on, every target has a base from HQ (its lineage), so the
rollout is a three-way upgrade without conflicts: in the "distinct" workload
each target keeps its own checkbox 2 and takes HQ's checkbox 1.
Targets per second = N / wall time; the median over the runs is reported, and
the section "## Rollout" of ``docs/performance.md`` is written (replaced; the
other sections are kept) when N is 1,000.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the bench package; provisioner as installed when it is
    sys.path.append(str(ROOT))

from bench.bench_core import (  # noqa: E402
    DOC_PATH,
    app_engine,
    machine,
    parse_args,
    postgres_url,
    server_version,
    sqlite_url,
    write_section,
)
from provisioner.clock import SystemClock  # noqa: E402
from provisioner.config.memo import IdentityMemo  # noqa: E402
from provisioner.db.models import AuditEvent, ConfigVersion, Tenant, Transfer  # noqa: E402
from provisioner.security.keystore import MasterKey  # noqa: E402
from provisioner.services import actors, configs, signing, tenants, transfers  # noqa: E402
from provisioner.services import documents as docstore  # noqa: E402
from provisioner.services.context import Provisioner  # noqa: E402
from provisioner.services.provisioning import rollout  # noqa: E402

SECTION_TITLE = "## Rollout"
TARGETS = {"sqlite": 200.0, "postgresql": 100.0}  # tenants per second
PG_BENCH_DB = "rollout_bench"  # its own database: other benchmarks may run at the same time


def setup(url: str, n: int) -> Provisioner:
    engine = app_engine(url)  # PostgreSQL: the runtime role, under row-level security
    app = Provisioner(engine, master_key=MasterKey(bytes(range(32))), clock=SystemClock())
    with app.transaction() as ctx:
        tenants.create(ctx, "hq", name="本部")
        tenants.add_user(ctx, "hq-admin", tenant_slug="hq", role="admin")
        pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, "hq").id).encode()
    for start in range(0, n, 100):
        with app.transaction() as ctx:
            for i in range(start, min(n, start + 100)):
                slug = f"shop-{i:04d}"
                tenants.create(ctx, slug, name=f"{i}号店")
                tenants.add_user(ctx, f"{slug}-admin", tenant_slug=slug, role="admin")
                ctx.session.flush()
                signing.trust(
                    ctx,
                    actors.resolve(ctx, f"{slug}-admin", slug),
                    pem,
                    label="本部",
                    policy="auto",
                )
    return app


def relabel(app: Provisioner, n: int, labels: Callable[[int], dict[int, str]]) -> None:
    """Give every target checkbox labels of its own (untimed): ``labels(i)`` maps a
    checkbox's position to shop i's label. One memo for them all: the sections a shop
    does not change are the same parse from shop to shop, checked once."""
    memo = IdentityMemo()
    for start in range(0, n, 50):
        with app.transaction() as ctx:
            for i in range(start, min(n, start + 50)):
                slug = f"shop-{i:04d}"
                tenant = actors.get_tenant(ctx, slug)
                data = configs.current(ctx, tenant).data
                boxes = [dict(c) for c in data["checkboxes"]]
                for position, label in labels(i).items():
                    boxes[position]["label"] = label
                configs.set_sections(
                    ctx,
                    actors.resolve(ctx, f"{slug}-admin", slug),
                    tenant,
                    {"checkboxes": boxes},
                    memo=memo,
                )


def diverge(app: Provisioner, n: int, run_no: int) -> None:
    """Give every target its own current document (checkbox 2 says which shop it is)."""
    relabel(app, n, lambda i: {1: f"{i}号店専用{run_no}"})


def roll_out(app: Provisioner, raw: bytes, n: int) -> int:
    """HQ's rollout of ``raw`` to the N shops, started and processed; the run's id."""
    with app.transaction() as ctx:
        run_id = rollout.start(
            ctx,
            actors.resolve(ctx, "hq-admin", "hq"),
            raw,
            [rollout.Target(f"shop-{i:04d}") for i in range(n)],
        ).id
    rollout.process(app, "hq-admin", run_id)
    return run_id


def one_run(
    app: Provisioner, n: int, run_no: int, distinct: bool, profile: bool
) -> tuple[float, str]:
    if distinct:
        diverge(app, n, run_no)
    with app.transaction() as ctx:
        hq = actors.get_tenant(ctx, "hq")
        actor = actors.resolve(ctx, "hq-admin", "hq")
        data = configs.current(ctx, hq).data
        boxes = [dict(c) for c in data["checkboxes"]]
        boxes[0]["label"] = f"本部指定{run_no}"
        configs.set_sections(ctx, actor, hq, {"checkboxes": boxes})
        before = dict(
            ctx.session.execute(
                select(Tenant.slug, Tenant.config_version).where(Tenant.slug.like("shop-%"))
            ).all()
        )
    with app.transaction() as ctx:
        raw = transfers.export(ctx, actors.resolve(ctx, "hq-admin", "hq"))
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    run_id = roll_out(app, raw, n)
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    with app.transaction() as ctx:  # the work was really done, by the batched path
        summary = rollout.summary(ctx, actors.resolve(ctx, "hq-admin", "hq"), run_id)
        assert summary["counts"] == {"applied": n}, summary["counts"]
        assert all(t["version"] == (before[t["tenant"]] or 0) + 1 for t in summary["targets"])
        bundle_id = summary["bundle_id"]
        ctx.enter_operator("read")  # the checks below read every target's rows
        transfers_made = ctx.session.scalar(
            select(func.count())
            .select_from(Transfer)
            .where(Transfer.status == "applied", Transfer.bundle_id == bundle_id)
        )
        assert transfers_made == n, transfers_made
        hq_digest = configs.current(ctx, actors.get_tenant(ctx, "hq")).digest
        documents = [
            (slug, version.digest, docstore.version_body(ctx.session, version))
            for slug, version in ctx.session.execute(
                select(Tenant.slug, ConfigVersion)
                .join(
                    Tenant,
                    (Tenant.id == ConfigVersion.tenant_id)
                    & (Tenant.config_version == ConfigVersion.version),
                )
                .where(Tenant.slug.like("shop-%"))
            )
        ]
        if distinct:  # an upgrade: HQ's change taken, each shop's own label kept
            for slug, _, document in documents:
                boxes = orjson.loads(document)["checkboxes"]
                assert boxes[0]["label"] == f"本部指定{run_no}", slug
                assert boxes[1]["label"] == f"{int(slug[5:])}号店専用{run_no}", slug
        else:
            assert {d for _, d, _ in documents} == {hq_digest}, (
                "a target did not end at HQ's configuration"
            )
        retried = ctx.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "rollout:batch_retried_one_by_one")
        )
        assert retried == 0, "a batch fell back to one-by-one delivery"
    report = ""
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        report = out.getvalue()
    return elapsed, report


@dataclass
class Result:
    backend: str
    workload: str
    version: str
    tenants: int
    times: list[float]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)

    @property
    def rate(self) -> float:
        return self.tenants / self.median_s

    @property
    def target(self) -> float:
        return TARGETS[self.backend]

    def row(self) -> str:
        runs = ", ".join(f"{self.tenants / t:.0f}" for t in self.times)
        verdict = "met" if self.rate >= self.target else "NOT met"
        return (
            f"| {self.version} | {self.workload} | {self.tenants} | {len(self.times)} | "
            f"{self.median_s:.2f} s | **{self.rate:.0f}** ({runs}) | "
            f">= {self.target:.0f} | {verdict} |"
        )


WORKLOADS = {"same": "one current document", "distinct": "a different document each"}


def bench(backend: str, url: str, n: int, repeat: int, profile: bool) -> list[Result]:
    app = setup(url, n)
    version = server_version(app)
    results = []
    run_no = 0
    for workload in WORKLOADS:
        result = Result(backend, WORKLOADS[workload], version, n, [])
        for _ in range(repeat):
            run_no += 1
            elapsed, report = one_run(
                app, n, run_no, workload == "distinct", profile and len(result.times) == repeat - 1
            )
            result.times.append(elapsed)
            print(
                f"{backend} ({workload}): run {run_no}: {n} tenants in {elapsed:.2f} s = "
                f"{n / elapsed:.0f} tenants/s",
                file=sys.stderr,
            )
            if report:
                print(report, file=sys.stderr)
        results.append(result)
    app.engine.dispose()
    return results


def section(results: list[Result], command: str) -> str:
    rows = "\n".join(r.row() for r in results)
    return f"""{SECTION_TITLE}

Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} by `{command}`
(load average before the run: {os.getloadavg()[0]:.2f}).
Machine: {machine()}.

Workload: one bundle (HQ's whole configuration at the default size, one
checkbox relabelled each run) rolled out to N tenants whose admins trust HQ's
key with policy `auto`. Timed: `rollout.start` (verify the bundle, record the
run and its N pending targets) + `rollout.process` (the whole delivery), wall
time; tenants/s = N / time; median over the runs (each run's rate in brackets).
Each run really applies: the benchmark checks afterwards that every target is
`applied` at the new version with one applied transfer, and that no batch had
to be redone one by one.

What each target costs (see `provisioner/services/provisioning/rollout.py`):
the bundle's signature, strict parse, schema and expiry are verified once per
run (every publisher-based target receives exactly these bytes); per target
remain the checks that depend on it (active, may receive, pins this very key,
not received before, disk room, records a change would strand) and its writes
(transfer with its plan, configuration version, tenant pointer, three audit
events, status row). Targets go in batches of 100, one transaction per batch,
with multi-row statements; the plan is computed once per distinct current
document. Two workloads: all targets at the same document (a standard HQ setup:
one plan for all), and every target at a different document (re-diverged before
each run, untimed: one plan per target). Before batching, one transaction per
target through `transfers.accept` + `transfers.approve` ran at about 48
tenants/s on SQLite (200 tenants, same machine).

| database | targets at | tenants | runs | median time | tenants/s (runs) | target | result |
|---|---|---|---|---|---|---|---|
{rows}
"""


# --------------------------------------------------------------------------- scale


SCALE_TITLE = "## Rollout at scale: storage per tenant"
SCALE_DB = "rollout_scale_bench"  # a database of its own
CONFIGS = ("default", "large")


def database_bytes(app: Provisioner) -> int:
    """The database's size (SQLite: pages in use, as the WAL makes them; PostgreSQL: on disk)."""
    with app.engine.connect() as conn:
        if app.engine.dialect.name == "postgresql":
            query = "SELECT pg_database_size(current_database())"
            return int(conn.exec_driver_sql(query).scalar_one())
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
        free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
        return (pages - free) * int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())


def local_changes(app: Provisioner, n: int) -> None:
    """Give every target a few changes of its own (two checkbox labels): untimed."""
    relabel(app, n, lambda i: {1: f"{i}号店専用", 2: f"{i}号店の会員"})


@dataclass
class Scale:
    backend: str
    version: str
    config: str
    size: int  # bytes of the configuration's canonical JSON
    tenants: int
    seconds: float
    growth: int  # bytes the database grew by during the timed rollout

    @property
    def per_tenant_ms(self) -> float:
        return self.seconds / self.tenants * 1000

    @property
    def growth_per_tenant(self) -> float:
        return max(0, self.growth - self.size) / self.tenants


def scale_one(backend: str, url: str, n: int, config: str) -> Scale:
    """One configuration: roll it out (untimed, so every target has HQ as its source), give
    each target local changes (untimed), then time the rollout of HQ's next change and
    measure how much the database grew."""
    from bench.bench_core import large_config
    from provisioner.canonical import canonical_bytes

    app = setup(url, n)
    version = server_version(app)
    with app.transaction() as ctx:
        hq = actors.get_tenant(ctx, "hq")
        if config == "large":
            configs.set_sections(ctx, actors.resolve(ctx, "hq-admin", "hq"), hq, large_config())
        size = len(configs.current_text(ctx, hq)[2])
        assert size == len(canonical_bytes(configs.current(ctx, hq).data))
    with app.transaction() as ctx:
        raw = transfers.export(ctx, actors.resolve(ctx, "hq-admin", "hq"))
    roll_out(app, raw, n)
    local_changes(app, n)
    with app.transaction() as ctx:  # HQ's next change (untimed)
        hq = actors.get_tenant(ctx, "hq")
        data = configs.current(ctx, hq).data
        boxes = [dict(c) for c in data["checkboxes"]]
        boxes[0]["label"] = "本部指定"
        configs.set_sections(ctx, actors.resolve(ctx, "hq-admin", "hq"), hq, {"checkboxes": boxes})
    with app.transaction() as ctx:
        raw = transfers.export(ctx, actors.resolve(ctx, "hq-admin", "hq"))
    before = database_bytes(app)
    started = time.perf_counter()
    run_id = roll_out(app, raw, n)
    elapsed = time.perf_counter() - started
    growth = database_bytes(app) - before - len(raw)  # the run keeps the bundle once
    with app.transaction() as ctx:  # every target took HQ's change and kept its own
        summary = rollout.summary(ctx, actors.resolve(ctx, "hq-admin", "hq"), run_id)
        assert summary["counts"] == {"applied": n}, summary["counts"]
        for i in (0, n // 2, n - 1):
            boxes = configs.current(ctx, actors.get_tenant(ctx, f"shop-{i:04d}")).data["checkboxes"]
            assert boxes[0]["label"] == "本部指定", i
            assert boxes[1]["label"] == f"{i}号店専用", i
    app.engine.dispose()
    print(
        f"{backend} {config}: {n} tenants in {elapsed:.2f} s, database +{growth:,} bytes",
        file=sys.stderr,
    )
    return Scale(backend, version, config, size, n, elapsed, growth)


def scale_section(results: list[Scale], command: str) -> str:
    rows = []
    for r in results:
        default = next(
            (x for x in results if x.backend == r.backend and x.config == "default"), None
        )
        ratio = f"{r.per_tenant_ms / default.per_tenant_ms:.2f}x" if default else "-"
        rows.append(
            f"| {r.version} | {r.config} ({r.size / 1024:,.0f} KiB) | {r.tenants} | "
            f"{r.seconds:.2f} s | {r.per_tenant_ms:.2f} ms | {ratio} | "
            f"{r.growth / 1024:,.0f} KiB | {r.growth_per_tenant / 1024:,.1f} KiB |"
        )
    body = "\n".join(rows)
    return f"""{SCALE_TITLE}

Measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} by `{command}`
(load average before the run: {os.getloadavg()[0]:.2f}).
Machine: {machine()}.

Workload: HQ's configuration rolled out (untimed) to N tenants trusting HQ with
policy `auto`; each tenant then changes two checkbox labels of its own (untimed);
HQ relabels checkbox 1 and the rollout of that change is timed (a three-way
upgrade per tenant, each tenant at a document of its own). Growth: the database's
size after the timed rollout minus before (SQLite: pages in use, WAL
included; PostgreSQL: `pg_database_size`), less the rollout's bundle (kept once
with the run); per tenant: less one copy of the document, divided by N.

| database | configuration | tenants | time | per tenant | vs default | growth | growth per tenant |
|---|---|---|---|---|---|---|---|
{body}
"""


def scale_main(args: argparse.Namespace) -> None:
    results: list[Scale] = []
    for backend in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        for config in CONFIGS if args.config == "both" else [args.config]:
            source = sqlite_url() if backend == "sqlite" else postgres_url(SCALE_DB)
            with source as url:
                results.append(scale_one(backend, url, args.tenants, config))
    print(scale_section(results, " ".join(["python bench/bench_rollout.py", *sys.argv[1:]])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--scale",
        action="store_true",
        help="instead: the rollout of a template change to tenants with local changes of "
        "their own, its time per tenant and the database growth per tenant",
    )
    parser.add_argument(
        "--config",
        choices=[*CONFIGS, "both"],
        default="both",
        help="with --scale: the default configuration, the 1.25 MB benchmark one, or both",
    )
    args = parse_args(parser)
    if args.scale:
        scale_main(args)
        return
    results: list[Result] = []
    for backend in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        source = sqlite_url() if backend == "sqlite" else postgres_url(PG_BENCH_DB)
        with source as url:
            results += bench(backend, url, args.tenants, args.repeat, args.profile)
    body = section(results, " ".join(["python bench/bench_rollout.py", *sys.argv[1:]]))
    print(body)
    if not args.no_write and args.tenants == 1000:
        write_section(body, SECTION_TITLE)
        print(f"wrote section {SECTION_TITLE!r} of {DOC_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
