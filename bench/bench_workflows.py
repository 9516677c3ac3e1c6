"""Workflow rules on the write paths: what active rules cost, and how fast a dry run is.

Run on demand (not part of the test suite). The issue's figures (1,000,000 contacts,
a 50,000-row import, both backends; writes docs/performance.md)::

    .venv/bin/python bench/bench_workflows.py --keep

(the defaults are the issue's scale; ``--keep`` leaves the seeded million contacts in
place -- an SQLite file in the temporary directory and a PostgreSQL database, the ones
``bench/bench_crm.py --keep`` uses for the same ``--contacts`` -- and reuses them next
time: the first run seeds them, several minutes per backend). Smaller runs::

    .venv/bin/python bench/bench_workflows.py --db sqlite --contacts 200000 --no-write

* **import**: ``csvio.import_customers`` of the bench_crm CSV (``--import-rows``, 50,000)
  into a fresh tenant with no workflows, then into a fresh tenant with 20 active
  ``created`` rules on contacts of which 10 match every row (each sets a checkbox or a
  memo) and 10 match none; alternated ``--rounds`` times, medians compared. Target:
  the rules' import at least 0.7x the rate of the plain one.
* **update**: ``records.update`` of one contact's title, each in its own transaction,
  in a tenant with no rules and in one with 50 active ``updated`` / ``field_changed``
  rules on contacts whose conditions do not hold (every rule is evaluated, none
  writes). Target: median at most 1 ms more than without rules. Also reported: the same
  with one of the 50 matching (its checkbox write included).
* **dry-run**: ``workflows.dry_run`` of a paused rule over the tenant of ``--contacts``
  (1,000,000) seeded contacts. Target: at most 2 s.

Whether the search index's native extension (``_postings``) is in use is printed and
written with the figures (the import builds the index; without the extension it is
built by the Python reference, slower on both sides of the ratio).

The section "## Workflows: rules on the write paths" of ``docs/performance.md`` is
written (replaced).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the bench package; provisioner as installed when it is
    sys.path.append(str(ROOT))

import bench.bench_core as core  # noqa: E402
import bench.bench_crm as crm  # noqa: E402
from provisioner.services import actors, configs, workflows  # noqa: E402
from provisioner.services.actors import Actor  # noqa: E402
from provisioner.services.context import Provisioner  # noqa: E402
from provisioner.services.crm import csvio, records, search_index  # noqa: E402

SECTION_TITLE = "## Workflows: rules on the write paths"


def native() -> str:
    return (
        "native extension in use (_postings)"
        if search_index.NATIVE
        else "native extension NOT in use: the Python reference builds the index"
    )


def rule(
    code: str,
    event: str,
    actions: list[dict[str, Any]],
    when: list[dict[str, Any]],
    field: str | None = None,
    active: bool = True,
) -> dict[str, Any]:
    return {
        "code": code,
        "label": code,
        "active": active,
        "object": "contact",
        "trigger": {"event": event, "field": field},
        "conditions": {"match": "all", "rules": when},
        "actions": actions,
    }


def import_rules() -> list[dict[str, Any]]:
    """20 created rules: 10 match every row of the bench CSV (a name is always there),
    10 match none (memo_5 is never written by it)."""
    out = []
    for i in range(10):
        action = (
            {"type": "set_checkbox", "index": i + 1, "checked": True}
            if i % 2 == 0
            else {"type": "set_field", "field": f"contact.memo_{6 + i // 2}", "value": f"自動{i}"}
        )
        out.append(
            rule(f"match_{i}", "created", [action], [{"field": "contact.name", "op": "not_empty"}])
        )
    for i in range(10):
        out.append(
            rule(
                f"miss_{i}",
                "created",
                [{"type": "set_checkbox", "index": 20 + i, "checked": True}],
                [{"field": "contact.memo_5", "op": "eq", "value": f"該当なし{i}"}],
            )
        )
    return out


def update_rules(matching: int = 0) -> list[dict[str, Any]]:
    """50 rules on contact updates whose conditions do not hold (``matching`` of them do)."""
    out = []
    for i in range(50):
        hit = i < matching
        when: list[dict[str, Any]] = (
            [{"field": "contact.name", "op": "not_empty"}]
            if hit
            else [
                {"field": "contact.memo_5", "op": "eq", "value": f"該当なし{i}"},
                {"field": "contact.checkbox_3", "op": "eq", "value": True},
            ]
        )
        event, field = ("field_changed", "contact.title") if i % 2 else ("updated", None)
        out.append(
            rule(
                f"upd_{i}",
                event,
                [{"type": "set_checkbox", "index": 40, "checked": True}],
                when,
                field,
            )
        )
    return out


def with_rules(app: Provisioner, actor: Actor, flows: list[dict[str, Any]]) -> None:
    with app.transaction() as ctx:
        configs.set_sections(
            ctx, actor, actors.get_tenant(ctx, actor.tenant_slug), {"workflows": flows}
        )


def timed_import(
    app: Provisioner, raw: bytes, flows: list[dict[str, Any]], n: int, tag: str
) -> float:
    actor = crm.tenant(app, f"wf-{tag}-{time.strftime('%H%M%S')}-{os.getpid()}")
    if flows:
        with_rules(app, actor, flows)
    started = time.perf_counter()
    with app.transaction() as ctx:
        report = csvio.import_customers(ctx, actor, raw, source="bench.csv")
    seconds = time.perf_counter() - started
    assert report.created == n, report
    return seconds


def run_import(app: Provisioner, rows: int, rounds: int) -> dict[str, Any]:
    raw = crm.import_csv(rows, 99)
    plain, ruled = [], []
    for r in range(rounds):
        plain.append(timed_import(app, raw, [], rows, f"plain{r}"))
        ruled.append(timed_import(app, raw, import_rules(), rows, f"rules{r}"))
    p, w = statistics.median(plain), statistics.median(ruled)
    return {
        "rows": rows,
        "plain": p,
        "rules": w,
        "ratio": p / w,
        "plain_rate": rows / p,
        "rules_rate": rows / w,
    }


def timed_updates(app: Provisioner, actor: Actor, contact: int, count: int) -> list[float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        with app.transaction() as ctx:
            records.update(ctx, actor, "contact", contact, {"title": f"役職{i % 7}"})
        times.append(time.perf_counter() - started)
    return times


def run_updates(app: Provisioner, count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag, flows in (("none", []), ("fifty", update_rules()), ("one", update_rules(1))):
        actor = crm.tenant(app, f"upd-{tag}-{time.strftime('%H%M%S')}-{os.getpid()}")
        if flows:
            with_rules(app, actor, flows)
        with app.transaction() as ctx:
            contact = records.create(ctx, actor, "contact", {"name": "更新 太郎"}).record["id"]
        timed_updates(app, actor, contact, 20)  # warm-up
        out[tag] = statistics.median(timed_updates(app, actor, contact, count))
    out["overhead_ms"] = (out["fifty"] - out["none"]) * 1000
    return out


def run_dry_run(app: Provisioner, actor: Actor, repeats: int) -> dict[str, Any]:
    flow = rule(
        "dm_target",
        "created",
        [{"type": "set_checkbox", "index": 9, "checked": True}],
        [{"field": "contact.memo_1", "op": "eq", "value": "DM希望"}],
        active=False,
    )
    with_rules(app, actor, [flow])
    times = []
    report: dict[str, Any] = {}
    for _ in range(repeats):
        started = time.perf_counter()
        with app.transaction() as ctx:
            report = workflows.dry_run(ctx, actor, "dm_target").to_dict()
        times.append(time.perf_counter() - started)
    return {
        "seconds": statistics.median(times),
        "examined": report["examined"],
        "matched": report["matched"],
    }


def run_backend(db: str, args: argparse.Namespace) -> dict[str, Any]:
    with crm.database(db, args.contacts, args.keep) as (url, fresh):
        app = crm.make_app(url)
        try:
            if fresh:
                big = crm.tenant(app, "crm-big")
                print(f"[{db}] seeding {args.contacts:,} contacts ...", flush=True)
                crm.seed_tenant(app, big, args.contacts, 1)
            big = crm.existing(app, "crm-big")
            result: dict[str, Any] = {"db": db, "server": core.server_version(app)}
            print(f"[{db}] dry-run over {args.contacts:,} contacts ...", flush=True)
            result["dry_run"] = run_dry_run(app, big, 3)
            print(f"[{db}] {result['dry_run']}", flush=True)
            print(f"[{db}] single updates ...", flush=True)
            result["update"] = run_updates(app, args.updates)
            print(f"[{db}] {result['update']}", flush=True)
            print(f"[{db}] imports of {args.import_rows:,} rows ...", flush=True)
            result["import"] = run_import(app, args.import_rows, args.rounds)
            print(f"[{db}] {result['import']}", flush=True)
            return result
        finally:
            app.engine.dispose()


def section(
    results: list[dict[str, Any]],
    args: argparse.Namespace,
    when: str,
    load: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> str:
    def verdict(ok: bool) -> str:
        return "**pass**" if ok else "**miss**"

    lines = [
        SECTION_TITLE,
        "",
        f"Measured {when} by `bench/bench_workflows.py` ({core.machine()}; "
        f"{args.contacts:,} contacts, import of {args.import_rows:,} rows x "
        f"{args.rounds} rounds alternated, {args.updates} updates per case; "
        f"{native()}; load average at the end {load[0]:.2f}, {load[1]:.2f}, "
        f"{load[2]:.2f}). "
        "Rules compiled once per configuration, `field_changed` rules indexed by "
        "field. The CSV import runs each new row's `created` rules on the row before "
        "it is inserted, worked out once per shape of row (`RuleSet.batch_runner`: "
        "the outcome of each condition, the values of the columns the rules write) "
        "and replayed for the others; the rules' values are part of the bulk insert, "
        "the change-log rows of rows that share their firings are written by one "
        "`INSERT ... SELECT` over the array of their ids, and the execution log has "
        "one row per rule and block of rows naming the records it fired on "
        "(`record_ids`, migration `0019_wf_log`; `workflow list` reads counters kept "
        "with it). The dry run counts in one aggregate query (examined, matched, the "
        "checkboxes it would change; SQLite reads the tenant's range of ids in "
        "order).",
        "",
        "| | import: no rules | 20 rules (10 match) | ratio (target >= 0.7) "
        "| update: no rules | 50 rules, none match | overhead (target <= 1 ms) "
        "| 50 rules, 1 matches | dry-run (target <= 2 s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        imp, upd, dry = r["import"], r["update"], r["dry_run"]
        lines.append(
            f"| {r['server']} | {imp['plain_rate']:,.0f} rows/s | {imp['rules_rate']:,.0f} "
            f"rows/s | {imp['ratio']:.2f} {verdict(imp['ratio'] >= 0.7)} "
            f"| {upd['none'] * 1000:.2f} ms | {upd['fifty'] * 1000:.2f} ms "
            f"| {upd['overhead_ms']:+.2f} ms {verdict(upd['overhead_ms'] <= 1.0)} "
            f"| {upd['one'] * 1000:.2f} ms "
            f"| {dry['seconds']:.2f} s over {dry['examined']:,} ({dry['matched']:,} match) "
            f"{verdict(dry['seconds'] <= 2.0)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--import-rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="reuse bench_crm's kept data")
    parser.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = core.parse_args(parser)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(native(), flush=True)
    results = [
        run_backend(db, args)
        for db in (("sqlite", "postgresql") if args.db == "both" else (args.db,))
    ]
    text = section(results, args, when, os.getloadavg())
    print(text)
    if not args.no_write:
        core.write_section(text, SECTION_TITLE)


if __name__ == "__main__":
    main()
