"""Three-way upgrade plan vs today's two-way plan, on the large benchmark configuration.

Run on demand (not part of the test suite)::

    .venv/bin/python bench/bench_upgrade.py               # 15 runs
    .venv/bin/python bench/bench_upgrade.py --repeat 5 --no-write

The partner's template is ``bench_core.large_config()`` (about 1.25 MB of
canonical JSON). A client took it (the **base**: all 500 workflows arrived
paused) and made it its own (**ours**: 5 checkboxes and 3 memo fields
relabelled, 20 picklist values renamed, 10 workflows switched on, one label).
The partner then improved it (**theirs**: 10 other checkboxes relabelled, 5 new
picklists, 50 workflows renamed, 3 picklist values retired, a field added to 20
custom databases). Both plans are made in the same process, interleaved, on
the same data, without a database:

* **two-way**: ``transfers.make_plan`` in ``replace`` mode -- what receiving the
  bundle plans today (combine, reference check, diff, plan dicts);
* **three-way**: ``transfers.upgrade_plan`` with the base -- merge per item and
  attribute, reference check, structure check of mixed items, diff, plan dicts.

Both are timed in CPU time of the process (``time.process_time``).

The requirement (issue 13): three-way at most 2x two-way.

``--rollout N`` also measures an upgrade rollout (issue 13: at least 200
tenants/s on SQLite, 100 on PostgreSQL for 1,000 tenants without conflicts)
with ``bench_rollout``'s setup and runs: a first rollout gives every target
its base (untimed), then each timed rollout is a three-way upgrade, with all
targets at one document, then with each target at its own document (its own
checkbox 2 kept, HQ's checkbox 1 taken; checked after each run).

The section "## Upgrades: three-way plan" of ``docs/performance.md`` is
written (replaced).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the bench package; provisioner as installed when it is
    sys.path.append(str(ROOT))

from bench.bench_core import large_config, machine, parse_args, write_section  # noqa: E402
from provisioner.canonical import canonical_bytes, sha256_hex  # noqa: E402
from provisioner.config.merge import paused_arrivals  # noqa: E402
from provisioner.config.validate import document_from_data  # noqa: E402
from provisioner.services import configs, lineage, transfers  # noqa: E402

SECTION_TITLE = "## Upgrades: three-way plan"
LIMIT = 2.0


def documents() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(base, ours, theirs) as described in the module doc; each is a valid document."""
    template = large_config()
    base = copy.deepcopy(template)
    ours = copy.deepcopy(template)
    ours["workflows"] = paused_arrivals(ours["workflows"], [])  # as it arrived: paused
    for i in range(5):
        ours["checkboxes"][i]["label"] = f"自社{i + 1}"
    for i in range(3):
        ours["memo_fields"][i]["label"] = f"自社メモ{i + 1}"
    for i in range(20):
        ours["picklists"][1 + i]["values"][0]["label"] = f"自社値{i + 1}"
    for i in range(10):
        ours["workflows"][i * 7] = {**ours["workflows"][i * 7], "active": True}
    ours["labels"]["contact.name"] = "会員氏名"
    theirs = copy.deepcopy(template)
    for i in range(10):
        theirs["checkboxes"][20 + i]["label"] = f"改訂{i + 1}"
    theirs["picklists"] += [
        {
            "code": f"new_{k}",
            "label": f"新項目{k}",
            "values": [{"code": f"v_{j}", "label": f"値{j}", "active": True} for j in range(20)],
        }
        for k in range(5)
    ]
    for i in range(50):
        theirs["workflows"][i * 3]["label"] += "（改）"
    for i in range(3):
        theirs["picklists"][100 + i]["values"][-1]["active"] = False
    for d in range(20):
        theirs["custom_databases"][d]["fields"].append(
            {"key": "added", "label": "追加項目", "type": "text", "required": False, "options": []}
        )
    for doc in (base, ours, theirs):
        document_from_data(doc, what="benchmark document")
    return base, ours, theirs


def timed(work: Any) -> tuple[float, Any]:
    """(CPU seconds of this process, result): a plan uses no database and no other thread,
    and CPU time is what a shared machine's load disturbs least."""
    gc.collect()
    start = time.process_time()
    out = work()
    return time.process_time() - start, out


def measure(repeat: int) -> dict[str, Any]:
    base, ours, theirs = documents()
    body = canonical_bytes(ours)
    head = configs.Current(2, "sha256:" + sha256_hex(body), ours)
    ancestor = lineage.Base(
        "tenant:partner", sections={k: v for k, v in base.items() if k != "schema_version"}
    )
    two, three = [], []
    upgrade = None
    for _ in range(repeat + 1):  # the first round warms up and is not counted
        t2, _ = timed(lambda: transfers.make_plan(head, theirs, mode="replace", only=None))
        t3, (_, plan, upgrade) = timed(lambda: transfers.upgrade_plan(head, theirs, ancestor))
        two.append(t2)
        three.append(t3)
    assert upgrade is not None
    assert upgrade.conflicts == [], [c.describe() for c in upgrade.conflicts]
    ratios = [b / a for a, b in zip(two[1:], three[1:], strict=True)]
    return {
        "size": len(canonical_bytes(theirs)),
        "two": statistics.median(two[1:]),
        "three": statistics.median(three[1:]),
        "ratio": statistics.median(ratios),
        "two_min": min(two[1:]),
        "three_min": min(three[1:]),
        "taken": len(upgrade.taken),
        "kept": len(upgrade.kept),
        "changes": len(plan["changes"]),
    }


ROLLOUT_TARGETS = {"sqlite": 200.0, "postgresql": 100.0}


def _first_copy(app: Any, n: int, distinct: bool) -> float:
    """The first rollout (no base yet: today's two-way plan), timed as bench_rollout times it."""
    from bench.bench_rollout import diverge, roll_out
    from provisioner.services import actors
    from provisioner.services.provisioning import rollout

    if distinct:
        diverge(app, n, 1)
    with app.transaction() as ctx:
        hq = actors.get_tenant(ctx, "hq")
        data = configs.current(ctx, hq).data
        boxes = [dict(c) for c in data["checkboxes"]]
        boxes[0]["label"] = "本部指定1"
        configs.set_sections(ctx, actors.resolve(ctx, "hq-admin", "hq"), hq, {"checkboxes": boxes})
    with app.transaction() as ctx:
        raw = transfers.export(ctx, actors.resolve(ctx, "hq-admin", "hq"))
    started = time.perf_counter()
    run_id = roll_out(app, raw, n)
    elapsed = time.perf_counter() - started
    with app.transaction() as ctx:
        summary = rollout.summary(ctx, actors.resolve(ctx, "hq-admin", "hq"), run_id)
    assert summary["counts"] == {"applied": n}, summary["counts"]
    return elapsed


def rollout_rates(backend: str, n: int, repeat: int) -> dict[str, dict[str, list[float]]]:
    """tenants/s per workload: the first copy (two-way) and the upgrades after it (three-way).

    Each workload on a fresh database: its first rollout gives every target its
    base, each later one is an upgrade (``bench_rollout.one_run`` checks the result).
    """
    from bench.bench_core import postgres_url, sqlite_url
    from bench.bench_rollout import one_run, setup

    rates: dict[str, dict[str, list[float]]] = {}
    for workload in ("same", "distinct"):
        source = sqlite_url() if backend == "sqlite" else postgres_url("upgrade_bench")
        with source as url:
            app = setup(url, n)
            copy_rate = n / _first_copy(app, n, workload == "distinct")
            upgrades = []
            for run_no in range(2, repeat + 2):
                elapsed, _ = one_run(app, n, run_no, workload == "distinct", False)
                upgrades.append(n / elapsed)
            app.engine.dispose()
        rates[workload] = {"copy": [copy_rate], "upgrade": upgrades}
        print(
            f"{backend} {workload}: first copy {copy_rate:.0f} tenants/s, upgrades "
            f"{', '.join(f'{r:.0f}' for r in upgrades)}",
            file=sys.stderr,
        )
    return rates


def rollout_table(rates: dict[str, dict[str, dict[str, list[float]]]], n: int) -> str:
    rows = []
    for backend, by_workload in rates.items():
        for workload, runs in by_workload.items():
            median = statistics.median(runs["upgrade"])
            target = ROLLOUT_TARGETS[backend]
            rows.append(
                f"| {backend} | {'one document' if workload == 'same' else 'own documents'} | "
                f"{n} | {runs['copy'][0]:.0f} | **{median:.0f}** "
                f"({', '.join(f'{r:.0f}' for r in runs['upgrade'])}) | "
                f"{median / runs['copy'][0]:.2f}x | >= {target:.0f} | "
                f"{'met' if median >= target else 'NOT met'} |"
            )
    return (
        "\nUpgrade rollout (`--rollout " + str(n) + "`), per database and workload on a "
        "fresh database: the first rollout (no base yet: today's two-way plan) is timed "
        "once (it is also the first rollout of its process: caches are cold), then "
        "each later rollout is a three-way upgrade without conflicts (in "
        "'own documents' each target keeps its own checkbox 2 and takes HQ's checkbox "
        "1); `rollout.start` + `rollout.process`, wall time, tenants/s; the upgrades' "
        "median (runs) and its ratio to the first copy of the same run.\n\n"
        "| database | targets at | tenants | first copy /s | upgrade /s (runs) | "
        "upgrade / copy | target | result |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )


def section(result: dict[str, Any], repeat: int, command: str) -> str:
    ratio = result["ratio"]
    verdict = "PASS" if ratio <= LIMIT else "FAIL"
    return f"""{SECTION_TITLE}

`{command}` ({machine()}). The plan of the partner's next template version
for a client that made the previous one its own, on the large configuration
({result["size"] / 1024:,.0f} KiB of canonical JSON): today's two-way plan
(`transfers.make_plan`, replace) and the three-way plan (`transfers.upgrade_plan`,
against the base the client took) of the same bundle, in the same process,
interleaved, no database; CPU time of the process (`time.process_time`: the
plans use no database and no other thread, and the load of the shared machine
disturbs CPU time far less than wall time), medians of {repeat} runs, and the median of the
ratios of the two plans made one after the other in each run (robust to the
load of a shared machine changing during the measurement; fastest runs:
{result["two_min"] * 1000:.1f} ms and {result["three_min"] * 1000:.1f} ms). The upgrade takes
{result["taken"]} addresses, keeps {result["kept"]} and has no conflict; its
plan lists {result["changes"]} changes.

| plan | median | median ratio to two-way | limit | verdict |
| --- | --- | --- | --- | --- |
| two-way (replace) | {result["two"] * 1000:.1f} ms | 1.00x | | |
| three-way (upgrade) | {result["three"] * 1000:.1f} ms | {ratio:.2f}x | <= {LIMIT:.0f}x \
| {verdict} |
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--no-write", action="store_true", help="print only; do not update docs/performance.md"
    )
    parser.add_argument(
        "--rollout",
        type=int,
        default=0,
        metavar="N",
        help="also time upgrade rollouts to N tenants (1000 for the requirement)",
    )
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgresql", "both"],
        default="both",
        help="databases of the rollout measurement",
    )
    args = parse_args(parser)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    load = os.getloadavg()[0]
    result = measure(args.repeat)
    command = " ".join([".venv/bin/python bench/bench_upgrade.py", *sys.argv[1:]])
    text = section(result, args.repeat, command)
    text = text.replace(
        f"`{command}` (", f"`{command}` (load average before the run: {load:.2f}; ", 1
    )
    if args.rollout:
        backends = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
        rates = {b: rollout_rates(b, args.rollout, 3) for b in backends}
        text += rollout_table(rates, args.rollout)
    print(text)
    if not args.no_write:
        write_section(text, SECTION_TITLE)


if __name__ == "__main__":
    main()
