"""CRM plan impact: what a configuration change does to 1,000,000 contacts.

Run on demand (not part of the test suite)::

    .venv/bin/python bench/bench_impact.py                      # SQLite and PostgreSQL
    .venv/bin/python bench/bench_impact.py --db sqlite --contacts 100000 --no-write
    .venv/bin/python bench/bench_impact.py --db postgresql --keep   # reuse the data next time

Setup (untimed, bulk inserts straight through the driver, then the tenants'
counts built once with ``tally.rebuild``): a tenant ``bench-main``
with N contacts (default 1,000,000) and a tenant ``bench-other`` with N/5 in the
same tables. Both run the same configuration: memo 1..8 and 10 are picklists
(12 values each), memo 9 free text, 48 enabled checkboxes, 20 customer and 5
product classifications, two custom databases. The contacts carry realistic
values (Japanese names, kana, companies, addresses and phones from
``provisioner.services.crm.seed``; memo picklist values, about 12% of each
checkbox set, classifications assigned), plus activities, purchases, family
members, products and custom-database records.

The plan (the change analysed) touches 48 checkboxes (40 relabelled, 8
disabled) and 20 picklists: 8 memo picklists lose 3 values each, memo 9 becomes
a picklist, memo 10 becomes text, the 5 built-in picklists (activity kind,
payment method, media, sex, family relation) and 5 unused ones each lose a
value; 3 customer and 1 product classification and a custom-database field and
a whole custom database are removed. Timed:

* **impact**: ``impact.impact(...)`` in its own read transaction (median of the runs),
  answered from the maintained counts (``crm_tallies``); once also with ``scan=True``
  (counted from the records, the reference), which must give the identical report;
* **apply_remap**: ``impact.apply_remap(...)`` of one memo-picklist value over the
  tenant's contacts (the remapped rows' search text included), rolled back after
  each run so every run does the same work.

The section "## CRM: plan impact" of ``docs/performance.md`` is written (replaced).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, func, select, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the bench package; provisioner as installed when it is
    sys.path.append(str(ROOT))

import bench.bench_core as core  # noqa: E402
from bench.bench_core import machine, server_version, timed  # noqa: E402
from provisioner.db import migrate  # noqa: E402
from provisioner.db.crm_models import (  # noqa: E402
    CrmActivity,
    CrmCompany,
    CrmContact,
    CrmCustomRecord,
    CrmFamily,
    CrmProduct,
    CrmPurchase,
)
from provisioner.db.engine import make_engine  # noqa: E402
from provisioner.security.keystore import MasterKey  # noqa: E402
from provisioner.services import actors, configs, tenants  # noqa: E402
from provisioner.services.actors import Actor  # noqa: E402
from provisioner.services.context import Provisioner  # noqa: E402
from provisioner.services.crm import impact, records, seed, tally  # noqa: E402
from provisioner.services.crm.text import company_suffix, name_key, phone_digits  # noqa: E402

SECTION_TITLE = "## CRM: plan impact"
PG_BENCH_DB = "impact_bench"
TARGET_S = 1.0
MAIN, OTHER = "bench-main", "bench-other"
PICKED = (1, 2, 3, 4, 5, 6, 7, 8, 10)  # memo fields that are picklists before the change
_VALUE_LABELS = (
    "新規",
    "既存",
    "休眠",
    "優良",
    "一般",
    "要注意",
    "見込み",
    "紹介",
    "法人",
    "個人",
    "代理店",
    "その他",
)


# --------------------------------------------------------------------------- configuration


def _values(prefix: str, n: int = 12) -> list[dict[str, Any]]:
    return [
        {"code": f"{prefix}_v{i:02d}", "label": f"{_VALUE_LABELS[i % 12]}{i}"} for i in range(n)
    ]


def base_config(default: dict[str, Any]) -> dict[str, Any]:
    """The tenant's configuration before the change."""
    memos: list[dict[str, Any]] = [
        {"index": i, "label": f"区分{i}", "type": "picklist", "picklist": f"memo{i}"}
        for i in PICKED
    ]
    memos.append({"index": 9, "label": "自由記述", "type": "text"})
    memos.sort(key=lambda m: m["index"])
    picklists = [
        *copy.deepcopy(default["picklists"]),
        *({"code": f"memo{i}", "label": f"区分{i}", "values": _values(f"m{i}")} for i in PICKED),
        *(
            {"code": f"extra{i}", "label": f"予備{i}", "values": _values(f"x{i}", 6)}
            for i in range(1, 6)
        ),
    ]
    return {
        "memo_fields": memos,
        "checkboxes": [
            {"index": i, "label": f"チェック項目{i}", "enabled": True} for i in range(1, 49)
        ],
        "picklists": picklists,
        "classifications": {
            "customer": [{"code": f"cc{i:02d}", "label": f"顧客分類{i}"} for i in range(20)],
            "product": [{"code": f"pc{i}", "label": f"商品分類{i}"} for i in range(5)],
        },
        "custom_databases": [
            {
                "code": "visits",
                "label": "訪問記録",
                "attached_to": "contact",
                "fields": [
                    {"key": "count", "label": "回数", "type": "integer"},
                    {"key": "place", "label": "場所", "type": "text"},
                    {"key": "note", "label": "備考", "type": "long_text"},
                ],
            },
            {
                "code": "surveys",
                "label": "アンケート",
                "attached_to": "contact",
                "fields": [{"key": "score", "label": "評価", "type": "integer"}],
            },
        ],
    }


def changed_config(base: dict[str, Any]) -> dict[str, Any]:
    """The plan's result: 48 checkboxes and 20 picklists touched (see the module doc)."""
    new = copy.deepcopy(base)
    for box in new["checkboxes"]:
        if box["index"] > 40:
            box["enabled"] = False
        else:
            box["label"] = f"新チェック項目{box['index']}"
    drop = {
        "activity_kind": "visit",
        "payment_method": "cod",
        "media": "fax",
        "sex": "other",
        "family_relation": "other",
        **{f"extra{i}": f"x{i}_v00" for i in range(1, 6)},
    }
    for pl in new["picklists"]:
        code = pl["code"]
        if code in drop:
            pl["values"] = [v for v in pl["values"] if v["code"] != drop[code]]
        elif code.startswith("memo"):
            pl["values"] = [v for v in pl["values"] if v["code"][-2:] not in ("10", "11")]
            for v in pl["values"]:
                if v["code"].endswith("_v09"):
                    v["active"] = False
    new["picklists"].append({"code": "memo9", "label": "自由記述区分", "values": _values("m9")})
    for memo in new["memo_fields"]:
        if memo["index"] == 9:
            memo.update(type="picklist", picklist="memo9")
        elif memo["index"] == 10:
            memo.update(type="text", picklist=None)
    classes = new["classifications"]
    classes["customer"] = classes["customer"][3:]
    classes["product"] = classes["product"][1:]
    visits = new["custom_databases"][0]
    visits["fields"] = [f for f in visits["fields"] if f["key"] != "note"]
    new["custom_databases"] = [visits]
    return new


# --------------------------------------------------------------------------- data


def _stamp(now: datetime, sqlite: bool) -> str:
    return now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else now.isoformat()


class Loader:
    """Bulk rows straight through the driver (executemany on SQLite, COPY on PostgreSQL)."""

    def __init__(self, app: Provisioner) -> None:
        self.app = app
        self.sqlite = app.engine.dialect.name == "sqlite"
        self.now = datetime.now(UTC)

    def defaults(self, table: Table) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for column in table.columns:
            if column.primary_key:
                continue
            default = getattr(column.default, "arg", None)
            if callable(default):
                default = None
            out[column.name] = default
        return out

    def load(
        self, table: Table, rows: Iterator[dict[str, Any]], base: dict[str, Any], batch: int = 20000
    ) -> int:
        template = {**self.defaults(table), **base}
        names = list(template)
        count = 0
        raw = self.app.engine.raw_connection()
        try:
            cursor = raw.cursor()
            chunk: list[tuple[Any, ...]] = []

            def flush() -> None:
                if not chunk:
                    return
                if self.sqlite:
                    cursor.executemany(
                        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "
                        f"({', '.join('?' * len(names))})",
                        chunk,
                    )
                else:
                    with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy_:
                        for row in chunk:
                            copy_.write_row(row)
                chunk.clear()

            if self.sqlite:
                cursor.execute("BEGIN")
            for row in rows:
                merged = {**template, **row}
                chunk.append(tuple(self._cell(merged[n]) for n in names))
                count += 1
                if len(chunk) >= batch:
                    flush()
            flush()
            raw.commit()
        finally:
            raw.close()
        return count

    def _cell(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return _stamp(value, self.sqlite)
        if isinstance(value, dict):
            return json.dumps(value, ensure_ascii=False)
        return value


def build(app: Provisioner, n: int, seed_value: int) -> dict[str, Any]:
    """Two tenants with the same configuration; N and N/5 contacts with history rows."""
    with app.transaction() as ctx:
        for slug in (MAIN, OTHER):
            tenants.create(ctx, slug, name=f"{slug} 株式会社", plan="standard")
            tenants.add_user(ctx, f"{slug}-admin", tenant_slug=slug, role="admin")
    with app.transaction() as ctx:
        start = configs.current(ctx, actors.get_tenant(ctx, MAIN)).data
    config = base_config(start)
    for slug in (MAIN, OTHER):
        with app.transaction() as ctx:
            actor = actors.resolve(ctx, f"{slug}-admin", slug)
            configs.set_sections(ctx, actor, actors.get_tenant(ctx, slug), config)
    loader = Loader(app)
    for slug, count, offset in ((MAIN, n, 0), (OTHER, max(1, n // 5), 1)):
        with app.transaction() as ctx:
            actor = actors.resolve(ctx, f"{slug}-admin", slug)
        started = time.perf_counter()
        _populate(app, loader, actor, count, seed_value + offset)
        print(
            f"  {slug}: {count:,} contacts and their history rows in "
            f"{time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    for slug in (MAIN, OTHER):  # loaded around the services: count them once
        started = time.perf_counter()
        with app.transaction() as ctx:
            tenant = actors.get_tenant(ctx, slug)
            if not loader.sqlite:
                ctx.session.execute(
                    text("SELECT set_config('provisioner.tenant_id', :t, true)"),
                    {"t": str(tenant.id)},
                )
            tally.rebuild(ctx.session.connection(), tenant.id)
        print(
            f"  {slug}: tallies counted in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
    if not loader.sqlite:
        with app.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    return config


def _populate(app: Provisioner, loader: Loader, actor: Actor, n: int, seed_value: int) -> None:
    rng = random.Random(seed_value)
    base = {
        "tenant_id": actor.tenant_id,
        "created_at": loader.now,
        "created_by": actor.login,
        "updated_at": loader.now,
        "updated_by": actor.login,
    }
    names = seed.company_names(rng, max(1, min(300, n // 20)))
    companies: dict[str, tuple[int, str]] = {}
    with app.transaction() as ctx:
        for name in names:
            row = CrmCompany(name=name, name_norm=name_key(name), phone="", **base)
            ctx.session.add(row)
            ctx.session.flush()
            companies[name] = (row.id, company_suffix(name, "as_entered"))
        for i in range(5):
            ctx.session.add(
                CrmProduct(
                    code=f"P{i:03d}",
                    name=f"商品{i}",
                    product_class=f"pc{i}",
                    unit_price=1000 * (i + 1),
                    **base,
                )
            )
    sexes = ("male", "female", "other", "")
    memo_values = {i: [f"m{i}_v{k:02d}" for k in range(12)] for i in PICKED}

    def contacts() -> Iterator[dict[str, Any]]:
        for person in seed.people(rng, n, names):
            company = person.pop("company")
            company_id, company_name = companies.get(company, (None, ""))
            row: dict[str, Any] = {**person, "company_id": company_id}
            for i in PICKED:
                row[f"memo_{i}"] = rng.choice(memo_values[i]) if rng.random() < 0.7 else ""
            row["memo_9"] = row.pop("memo_1")  # free text from the seed's memo phrases
            row["memo_1"] = rng.choice(memo_values[1]) if rng.random() < 0.7 else ""
            r = rng.random()
            row["classifications"] = (
                ""
                if r < 0.5
                else f",cc{rng.randrange(20):02d},"
                if r < 0.9
                else f",cc{rng.randrange(10):02d},cc{rng.randrange(10, 20):02d},"
            )
            row["sex"] = rng.choice(sexes)
            row["name_norm"] = name_key(row["name"])
            row["phone_digits"] = phone_digits(row["phone"])
            row["mobile_digits"] = phone_digits(row["mobile"])
            row["search_text"] = records.search_text(
                {**{k: row.get(k, "") for k in records.SEARCH_PARTS}}, company_name
            )
            yield row

    contact_table = CrmContact.__table__
    assert isinstance(contact_table, Table)
    contact_defaults = {
        c: ""
        for c in (
            "kana",
            "title",
            "email",
            "phone",
            "mobile",
            "fax",
            "postal_code",
            "address",
            "birthday",
            "sex",
            "note",
            *records.MEMOS,
            "classifications",
            "search_text",
            "phone_digits",
            "mobile_digits",
        )
    }
    loader.load(
        contact_table,
        contacts(),
        {**base, **contact_defaults, "checkboxes": 0, "log_personal_info": False},
    )
    with app.engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(CrmContact.id), func.max(CrmContact.id)).where(
                CrmContact.tenant_id == actor.tenant_id
            )
        ).one()

    def some_contact() -> int:
        return int(rng.randint(first, last))

    kinds = ("phone", "email", "visit", "store", "other")
    methods = ("cash", "bank_transfer", "credit_card", "cod")
    media = ("phone", "fax", "web", "store")

    def activities() -> Iterator[dict[str, Any]]:
        for _ in range(n // 5):
            yield {
                "contact_id": some_contact(),
                "date": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "kind": rng.choice(kinds),
                "content": rng.choice(("問い合わせ", "見積依頼", "訪問", "クレーム対応")),
                "detail": "",
                "response": "",
                "store": "",
                "staff": "",
                "memo": "",
            }

    def purchases() -> Iterator[dict[str, Any]]:
        for _ in range(n // 10):
            quantity = rng.randint(1, 5)
            yield {
                "contact_id": some_contact(),
                "date": f"2025-{rng.randint(1, 12):02d}-01",
                "product_class": f"pc{rng.randrange(5)}",
                "product_code": "P001",
                "product_name": "商品",
                "quantity": quantity,
                "unit_price": 1000,
                "amount": 1000 * quantity,
                "payment_method": rng.choice(methods),
                "shipped": True,
                "paid": True,
                "media": rng.choice(media),
                "memo": "",
            }

    def family() -> Iterator[dict[str, Any]]:
        for _ in range(n // 50):
            yield {
                "contact_id": some_contact(),
                "name": "家族",
                "kana": "",
                "birthday": "",
                "relation": rng.choice(("spouse", "child", "other")),
                "sex": rng.choice(sexes),
                "living_together": False,
                "occupation": "",
                "hobby": "",
            }

    def custom() -> Iterator[dict[str, Any]]:
        for i in range(n // 10):
            if i % 5:
                data: dict[str, Any] = {"count": rng.randint(1, 9), "place": "事務所"}
                if rng.random() < 0.3:
                    data["note"] = "駐車場あり"
                yield {"database": "visits", "owner_id": some_contact(), "data": data}
            else:
                yield {
                    "database": "surveys",
                    "owner_id": some_contact(),
                    "data": {"score": rng.randint(1, 5)},
                }

    for model, rows in (
        (CrmActivity, activities()),
        (CrmPurchase, purchases()),
        (CrmFamily, family()),
        (CrmCustomRecord, custom()),
    ):
        table = model.__table__
        assert isinstance(table, Table)
        loader.load(table, rows, base)


# --------------------------------------------------------------------------- databases


def database(backend: str, keep: bool) -> AbstractContextManager[tuple[str, bool]]:
    """(url, fresh): a fresh database, or the kept one of an earlier ``--keep`` run."""
    return core.kept_database(backend, "impact_bench" if backend == "sqlite" else PG_BENCH_DB, keep)


def run_backend(backend: str, n: int, repeat: int, keep: bool, seed_value: int) -> dict[str, Any]:
    with database(backend, keep) as (url, fresh):
        engine = make_engine(url)
        app = Provisioner(engine, master_key=MasterKey(os.urandom(32)))
        if fresh:
            migrate.upgrade(engine)
            print(f"{backend}: building {n:,} contacts...", file=sys.stderr)
            build(app, n, seed_value)
        else:  # a kept database: bring it to the current schema (0006 counts its records)
            started = time.perf_counter()
            migrate.upgrade(engine)
            print(f"{backend}: migrated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        with app.transaction() as ctx:
            tenant_id = actors.get_tenant(ctx, MAIN).id
            before = configs.current(ctx, actors.get_tenant(ctx, MAIN)).data
            rows = {
                m.__tablename__: ctx.session.scalar(
                    select(func.count()).select_from(m).where(m.tenant_id == tenant_id)
                )
                or 0
                for m in (CrmContact, CrmActivity, CrmPurchase, CrmCustomRecord)
            }
            total = ctx.session.scalar(select(func.count()).select_from(CrmContact)) or 0
        after = changed_config(before)
        version = server_version(app)

        def analyse() -> dict[str, Any]:
            with app.transaction() as ctx:
                return impact.impact(ctx, tenant_id, before, after)

        report = analyse()  # warm-up (and the report shown)

        def scan() -> dict[str, Any]:
            with app.transaction() as ctx:
                return impact.impact(ctx, tenant_id, before, after, scan=True)

        scan_time, reference = timed(scan)
        print(
            f"{backend}: impact by scan (the reference) {scan_time * 1e3:.0f} ms", file=sys.stderr
        )
        if reference != report:
            raise SystemExit("impact() from the tallies differs from the scan")
        load = [os.getloadavg()[0]]
        times, cpu = [], []

        def analyse_cpu() -> dict[str, Any]:  # CPU of the analysis only (not timed's gc)
            started = time.process_time()
            try:
                return analyse()
            finally:
                cpu.append(time.process_time() - started)

        for _ in range(repeat):
            times.append(timed(analyse_cpu)[0])
            print(
                f"{backend}: impact {times[-1] * 1e3:.0f} ms (this process: "
                f"{cpu[-1] * 1e3:.0f} ms CPU)",
                file=sys.stderr,
            )
        load.append(os.getloadavg()[0])
        kinds: dict[str, int] = {}
        for item in report["items"]:
            kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
        if report != analyse():
            raise SystemExit("impact() is not deterministic")
        remap = {"memo3.m3_v10": "m3_v01"}

        class Rollback(Exception):
            pass

        def remap_once() -> int:
            changed = 0
            try:
                with app.transaction() as ctx:
                    changed = impact.apply_remap(ctx, tenant_id, after, remap)["memo3.m3_v10"]
                    ctx.session.flush()
                    raise Rollback
            except Rollback:
                pass
            return changed

        def floor_once() -> int:
            return remap_floor(engine, tenant_id, "memo_3", "m3_v10", "m3_v01")

        remap_times, floor_times, remapped = [], [], 0
        for _ in range(max(1, min(repeat, 3))):  # interleaved: the same load for both
            elapsed, floored = timed(floor_once)
            floor_times.append(elapsed)
            elapsed, remapped = timed(remap_once)
            remap_times.append(elapsed)
            if floored != remapped:
                raise SystemExit(f"the floor changed {floored} rows, apply_remap {remapped}")
            print(
                f"{backend}: apply_remap {remapped:,} rows in {elapsed:.2f} s (floor "
                f"{floor_times[-1]:.2f} s)",
                file=sys.stderr,
            )
        engine.dispose()
    return {
        "backend": backend,
        "server": version,
        "contacts": rows["crm_contacts"],
        "all_contacts": total,
        "rows": rows,
        "runs": repeat,
        "impact": statistics.median(times),
        "impact_all": times,
        "impact_cpu": statistics.median(cpu),
        "load": load,
        "scan": scan_time,
        "items": len(report["items"]),
        "blocking": report["blocking"],
        "kinds": kinds,
        "remap": statistics.median(remap_times),
        "remapped": remapped,
        "remap_floor": statistics.median(floor_times),
        "remap_ratio": statistics.median(
            r / f for r, f in zip(remap_times, floor_times, strict=True)
        ),
        "remap_runs": len(remap_times),
    }


#: apply_remap at most this many times its floor (issue 16)
REMAP_LIMIT = 3.0


def remap_floor(engine: Engine, tenant_id: int, column: str, old: str, new: str) -> int:
    """The floor of a remap: the same rows rewritten by one raw UPDATE plus their
    change-log rows by one INSERT ... SELECT (on PostgreSQL one statement: the UPDATE's
    RETURNING feeds the INSERT), no search text, index or tallies; rolled back. The
    rows changed."""
    changes = json.dumps({column: [old, new]})
    with engine.connect() as conn, conn.begin() as transaction:
        params = {"t": tenant_id, "old": old, "new": new, "changes": changes}
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("SELECT set_config('provisioner.tenant_id', :t, true)"), {"t": str(tenant_id)}
            )
            n = conn.execute(
                text(
                    f"WITH u AS (UPDATE crm_contacts SET {column} = :new, updated_at = now(), "
                    "updated_by = 'floor' WHERE tenant_id = :t AND "
                    f"{column} = :old "
                    "RETURNING id) INSERT INTO crm_changes (tenant_id, at, actor, record_type, "
                    "record_id, action, changes, purpose) SELECT :t, now(), 'floor', 'contact', "
                    "id, 'update', CAST(:changes AS json), '' FROM u"
                ),
                params,
            ).rowcount
        else:  # a table pass (tenant_id + 0), as apply_remap chooses for a large tenant
            conn.execute(
                text(
                    "INSERT INTO crm_changes (tenant_id, at, actor, record_type, record_id, "
                    "action, changes, purpose) SELECT :t, CURRENT_TIMESTAMP, 'floor', 'contact', "
                    f"id, 'update', :changes, '' FROM crm_contacts WHERE tenant_id + 0 = :t AND "
                    f"{column} = :old"
                ),
                params,
            )
            n = conn.execute(
                text(
                    f"UPDATE crm_contacts SET {column} = :new, updated_at = CURRENT_TIMESTAMP, "
                    f"updated_by = 'floor' WHERE tenant_id + 0 = :t AND {column} = :old"
                ),
                params,
            ).rowcount
        transaction.rollback()
    return n


def section(results: list[dict[str, Any]], command: str, when: str) -> str:
    first = results[0]
    rows = []
    for r in results:
        ok = r["impact"] <= TARGET_S
        cpu = f"{r['impact_cpu'] * 1e3:.0f} ms" if r["backend"] == "sqlite" else "(server)"
        rows.append(
            f"| {r['server']} | impact (48 checkboxes, 20 picklists) | "
            f"{r['impact'] * 1e3:.0f} ms | {cpu} | <= {TARGET_S * 1e3:.0f} ms | "
            f"{core.verdict(ok)} |"
        )
        rows.append(
            f"| {r['server']} | impact by scan (the reference, 1 run) | "
            f"{r['scan'] * 1e3:.0f} ms | - | - | - |"
        )
        rows.append(
            f"| {r['server']} | remap floor: raw UPDATE + change-log INSERT ... SELECT "
            f"| {r['remap_floor']:.2f} s | - | - | - |"
        )
        rows.append(
            f"| {r['server']} | apply_remap (1 value, {r['remapped']:,} contacts) | "
            f"{r['remap']:.2f} s ({r['remap_ratio']:.2f}x the floor) | - | "
            f"<= {REMAP_LIMIT:.0f}x the floor | "
            f"{core.verdict(r['remap_ratio'] <= REMAP_LIMIT)} |"
        )
    runs = ", ".join(
        f"{r['backend']}: " + " / ".join(f"{t * 1e3:.0f}" for t in r["impact_all"]) for r in results
    )
    loads = ", ".join(f"{r['backend']}: {r['load'][0]:.1f} -> {r['load'][1]:.1f}" for r in results)
    kinds = ", ".join(f"{k} x{v}" for k, v in sorted(first["kinds"].items()))
    data = first["rows"]
    return f"""{SECTION_TITLE}

Measured {when} by `bench/bench_impact.py`. Machine: {machine()}.

Reproduce: `{command}`

Workload: one tenant with {first["contacts"]:,} contacts ({data["crm_activities"]:,}
activities, {data["crm_purchases"]:,} purchases, {data["crm_custom_records"]:,}
custom-database records) and another tenant's rows in the same tables
({first["all_contacts"]:,} contacts in all), loaded with bulk inserts: seed-data
names, kana, companies, addresses and phones; memo 1..8 and 10 hold picklist
values (70% filled), memo 9 free text, about 12% of each of the 48 checkboxes
set, half the contacts with a customer classification. The plan analysed
touches 48 checkboxes (40 relabelled, 8 disabled) and 20 picklists (8 memo
picklists lose 3 values each, memo 9 text -> picklist, memo 10 picklist ->
text, 5 built-in and 5 unused picklists lose a value), removes 3 customer and
1 product classifications, a custom-database field and a whole custom
database. Report: {first["items"]} items ({first["blocking"]} blocking): {kinds}.

`impact` runs in its own read transaction; median of {first["runs"]} runs after a
warm-up (all runs, ms: {runs}; 1-minute load average of the 2-core machine
during the runs: {loads}). The CPU column is this process's CPU time: on
SQLite the whole query runs in-process, so it is the work itself, much less
affected by other load than the wall time. `apply_remap` rewrites one
memo-picklist value over the tenant's contacts, search text (and its n-gram
index) of the rewritten rows and a change-log row per record included, and is
rolled back after each run (median of {first["remap_runs"]}).

Where the time goes: `impact` reads the tenant's maintained counts
(`crm_tallies`: records per picklist value, checkbox, classification and
custom field, kept exact by every write path; see
`provisioner/services/crm/tally.py`) -- one query for the few hundred counts
the 88 questions need, so its time does not grow with the number of records.
The reference row is the same analysis counted from the records (one aggregate
pass per table with questions: on the contacts about 28 aggregates per row);
the benchmark checks that both give the identical report. The loader inserts
rows around the services, so the counts are built once after the load
(`tally.rebuild`, as migration 0006 does for existing data); a kept database
from before 0006 is counted by the migration.

| backend | operation | median | CPU in-process | target | verdict |
| --- | --- | ---: | ---: | ---: | --- |
{chr(10).join(rows)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7, help="timed impact runs (default 7)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--keep", action="store_true", help="keep the database (and reuse a kept one) between runs"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; do not update docs/performance.md"
    )
    args = core.parse_args(parser)
    if args.repeat < 1 or args.contacts < 100:
        parser.error("--repeat must be >= 1 and --contacts >= 100")
    backends = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results = [run_backend(b, args.contacts, args.repeat, args.keep, args.seed) for b in backends]
    command = (
        f".venv/bin/python bench/bench_impact.py --db {args.db} "
        f"--contacts {args.contacts} --repeat {args.repeat}"
    )
    body = section(results, command, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(body)
    if not args.no_write:
        core.write_section(body, SECTION_TITLE)
        print(f"wrote section {SECTION_TITLE!r} of {core.DOC_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
