"""Rollout performance: one bundle to 1,000 tenants with the ``auto`` policy.

Run on demand (not part of the test suite)::

    .venv/bin/python bench/bench_rollout.py                  # SQLite and PostgreSQL, 3 runs
    .venv/bin/python bench/bench_rollout.py --db sqlite --tenants 200 --repeat 1
    .venv/bin/python bench/bench_rollout.py --profile        # also cProfile one run

Setup (untimed): an HQ tenant and N target tenants (each with an admin) whose
admins registered HQ's key as a trusted publisher with policy ``auto``. Each
run (timed): HQ changes one checkbox label, exports a bundle, and
``rollout.start`` + ``rollout.process`` deliver it to every target -- per
target, in its own transaction: quota check, full verification (signature,
strict parse, schema), plan, pending transfer, approval (re-plan, new
configuration version), audit events, status row. Targets per second =
N / wall time; the median over the runs is reported, and the section
"## Rollout" of ``docs/performance.md`` is written (replaced).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import platform
import pstats
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_core import machine, postgres_url, server_version, sqlite_url  # noqa: E402
from provisioner.clock import SystemClock  # noqa: E402
from provisioner.db import migrate  # noqa: E402
from provisioner.db.engine import make_engine  # noqa: E402
from provisioner.security.keystore import MasterKey  # noqa: E402
from provisioner.services import actors, configs, signing, tenants, transfers  # noqa: E402
from provisioner.services.context import Provisioner  # noqa: E402
from provisioner.services.provisioning import rollout  # noqa: E402

DOC_PATH = ROOT / "docs" / "performance.md"
SECTION_TITLE = "## Rollout"
HEADER = "# Performance\n\nMeasured numbers; each section is written by its benchmark script.\n"
TARGETS = {"sqlite": 200.0, "postgresql": 100.0}  # tenants per second


def setup(url: str, n: int) -> Provisioner:
    engine = make_engine(url)
    migrate.upgrade(engine)
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
                signing.trust(ctx, actors.resolve(ctx, f"{slug}-admin", slug), pem,
                              label="本部", policy="auto")
    return app


def one_run(app: Provisioner, n: int, run_no: int, profile: bool) -> tuple[float, str]:
    with app.transaction() as ctx:
        hq = actors.get_tenant(ctx, "hq")
        actor = actors.resolve(ctx, "hq-admin", "hq")
        data = configs.current(ctx, hq).data
        boxes = [dict(c) for c in data["checkboxes"]]
        boxes[0]["label"] = f"本部指定{run_no}"
        configs.set_sections(ctx, actor, hq, {"checkboxes": boxes})
    with app.transaction() as ctx:
        raw = transfers.export(ctx, actors.resolve(ctx, "hq-admin", "hq"))
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    with app.transaction() as ctx:
        run_id = rollout.start(ctx, actors.resolve(ctx, "hq-admin", "hq"), raw,
                               [rollout.Target(f"shop-{i:04d}") for i in range(n)]).id
    rollout.process(app, "hq-admin", run_id)
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    with app.transaction() as ctx:
        counts = rollout.summary(ctx, actors.resolve(ctx, "hq-admin", "hq"), run_id)["counts"]
    assert counts == {"applied": n}, counts
    report = ""
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        report = out.getvalue()
    return elapsed, report


def bench(backend: str, url: str, n: int, repeat: int, profile: bool) -> dict[str, object]:
    app = setup(url, n)
    version = server_version(app)
    times = []
    for run_no in range(1, repeat + 1):
        elapsed, report = one_run(app, n, run_no, profile and run_no == repeat)
        times.append(elapsed)
        print(f"{backend}: run {run_no}: {n} tenants in {elapsed:.2f} s = "
              f"{n / elapsed:.0f} tenants/s", file=sys.stderr)
        if report:
            print(report, file=sys.stderr)
    app.engine.dispose()
    median = statistics.median(times)
    return {"backend": backend, "version": version, "tenants": n, "runs": len(times),
            "median_s": median, "rate": n / median, "target": TARGETS[backend],
            "all": [round(n / t) for t in times]}


def section(results: list[dict[str, object]], command: str) -> str:
    rows = "\n".join(
        f"| {r['version']} | {r['tenants']} | {r['runs']} | {float(r['median_s']):.2f} s | "  # type: ignore[arg-type]
        f"**{float(r['rate']):.0f}** ({', '.join(map(str, r['all']))}) | "  # type: ignore[arg-type]
        f">= {float(r['target']):.0f} | "  # type: ignore[arg-type]
        f"{'met' if float(r['rate']) >= float(r['target']) else 'NOT met'} |"  # type: ignore[arg-type]
        for r in results)
    return f"""{SECTION_TITLE}

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `{command}`.
Machine: {machine()}.

One bundle (HQ's whole configuration, default size) rolled out to N tenants
whose admins trust HQ with policy `auto`: per target, in its own transaction,
quota check, full verification (Ed25519 signature, strict parse, schema),
plan, pending transfer, approval (re-plan, new configuration version), audit
events and the target's status row. Tenants/s = N / wall time of
`rollout.start` + `rollout.process`; median over the runs (each run's rate in
brackets).

| database | tenants | runs | median time | tenants/s (runs) | target | |
|---|---|---|---|---|---|---|
{rows}
"""


def write_section(body: str) -> None:
    existing = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else HEADER
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(existing):
        updated = pattern.sub(lambda _: body + "\n", existing, count=1)
    else:
        updated = existing.rstrip("\n") + "\n\n" + body
    DOC_PATH.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    results = []
    for backend in (["sqlite", "postgresql"] if args.db == "both" else [args.db]):
        source = sqlite_url() if backend == "sqlite" else postgres_url()
        with source as url:
            results.append(bench(backend, url, args.tenants, args.repeat, args.profile))
    body = section(results, "python bench/bench_rollout.py " + " ".join(sys.argv[1:]))
    print(body)
    if not args.no_write and args.tenants == 1000:
        write_section(body)
        print(f"wrote section {SECTION_TITLE!r} of {DOC_PATH}", file=sys.stderr)
    _ = platform


if __name__ == "__main__":
    main()
