"""Core performance: export+sign, receive and approve+apply of a LARGE configuration.

Run on demand (not part of the test suite)::

    .venv/bin/python bench/bench_core.py                 # SQLite and PostgreSQL, 15 runs each
    .venv/bin/python bench/bench_core.py --db sqlite --repeat 5
    .venv/bin/python bench/bench_core.py --profile       # also cProfile receive and approve

A partner tenant holds a large, realistic Japanese configuration (48 checkboxes,
10 memo fields, 200 picklists x 50 values, 500 workflows, 100 custom databases
x 30 fields, > 500 KB of canonical JSON). Each run, for a target tenant still at
the default configuration: the target's admin generates a copy key (untimed),
then we time

* **export+sign**: ``transfers.export`` with that key, in its own transaction
  (read the current version, build the canonical payload, sign, audit, commit);
* **receive**: ``transfers.receive`` of that bundle in its own transaction
  (verify, strict parse, validate, plan, store the pending transfer, consume
  the key, audit, commit);
* **approve+apply**: ``transfers.approve`` in its own transaction;

then roll the target back to version 1 (untimed) so every run does the same
work. Beside each operation its *floor* is timed in the same run, on the same
bytes: ``orjson.dumps`` of the payload data + Ed25519 signing of those bytes;
Ed25519 verification + ``orjson.loads`` of the payload. Medians over the runs
are reported, with ratio = median(operation) / median(floor). The section
"## Core: bundles and apply" of ``docs/performance.md`` is written (replaced).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import multiprocessing
import os
import platform
import pstats
import re
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the bench package; provisioner as installed when it is
    sys.path.append(str(ROOT))

from provisioner.bundles.envelope import pae, parse_envelope, sign_envelope  # noqa: E402
from provisioner.bundles.payload import (  # noqa: E402
    BundlePayload,
    _config_span,
    _PayloadContract,
    _read_known,
    _remember,
    forget_validated,
)
from provisioner.canonical import canonical_bytes, sha256_hex  # noqa: E402
from provisioner.config import diff as config_diff  # noqa: E402
from provisioner.config.defaults import DEFAULT_LABELS, default_document  # noqa: E402
from provisioner.config.document import CHECKBOX_COUNT, MEMO_COUNT  # noqa: E402
from provisioner.config.fast import dict_validator  # noqa: E402
from provisioner.config.merge import combine, paused_arrivals  # noqa: E402
from provisioner.config.validate import check_references, document_from_data  # noqa: E402
from provisioner.db import migrate, roles  # noqa: E402
from provisioner.db.engine import make_engine  # noqa: E402
from provisioner.security.keystore import MasterKey  # noqa: E402
from provisioner.services import actors, configs, copykeys, tenants, transfers  # noqa: E402
from provisioner.services.actors import Actor  # noqa: E402
from provisioner.services.context import Provisioner  # noqa: E402
from provisioner.services.documents import digest_of  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "PROVISIONER_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PG_BENCH_DB = "provisioner_bench"
DOC_PATH = ROOT / "docs" / "performance.md"
SECTION_TITLE = "## Core: bundles and apply"

EXPORT_TARGET = 3.0  # x floor
RECEIVE_TARGET = 3.0  # x floor (issue 16)
APPLY_TARGET_MS = 50.0  # absolute


# --------------------------------------------------------------------------- the configuration

_CHECKBOXES = [
    "年賀状",
    "暑中見舞",
    "お中元",
    "お歳暮",
    "VIP",
    "Aランク",
    "Bランク",
    "Cランク",
    "DM不要",
    "電話不可",
    "メール配信希望",
    "FAX不要",
    "訪問不可",
    "督促中",
    "与信要確認",
    "新規見込み",
    "休眠顧客",
    "優良顧客",
    "紹介者",
    "展示会来場",
    "セミナー参加",
    "資料請求済",
    "見積提出済",
    "契約更新対象",
    "解約予定",
    "クレーム履歴あり",
    "要注意",
    "株主",
    "社員紹介",
    "代理店経由",
    "Web会員",
    "ポイント会員",
    "誕生日DM",
    "カタログ送付",
    "サンプル送付",
    "アンケート回答",
    "反社チェック済",
    "個人情報同意済",
    "メルマガ登録",
    "LINE連携",
    "請求書郵送",
    "請求書メール",
    "口座振替",
    "前払い",
]
_TOPICS = [
    "来店きっかけ",
    "業種区分",
    "地域",
    "商品カテゴリ",
    "問合せ経路",
    "顧客ランク",
    "支払条件",
    "配送方法",
    "契約種別",
    "解約理由",
    "購入動機",
    "媒体",
    "担当部署",
    "対応結果",
    "優先度",
    "見込み度",
    "競合",
    "決裁者",
    "予算規模",
    "導入時期",
]
_WORDS = [
    "電話",
    "メール",
    "来店",
    "訪問",
    "紹介",
    "展示会",
    "新聞広告",
    "チラシ",
    "ダイレクトメール",
    "ホームページ",
    "検索広告",
    "SNS",
    "テレビCM",
    "ラジオ",
    "雑誌",
    "口コミ",
    "代理店",
    "セミナー",
    "ウェビナー",
    "アンケート",
    "北海道",
    "東北",
    "関東",
    "中部",
    "近畿",
    "中国",
    "四国",
    "九州",
    "沖縄",
    "首都圏",
    "製造業",
    "小売業",
    "卸売業",
    "サービス業",
    "建設業",
    "不動産業",
    "医療",
    "福祉",
    "教育",
    "官公庁",
    "金融",
    "保険",
    "運輸",
    "情報通信",
    "飲食",
    "宿泊",
    "農業",
    "その他",
    "未定",
    "不明",
]
_ACTIVITY_KINDS = [
    ("request", "ご要望"),
    ("complaint", "クレーム"),
    ("visit_store", "来店"),
    ("phone_inquiry", "電話問合せ"),
    ("email_inquiry", "メール問合せ"),
    ("visit", "訪問"),
    ("estimate", "見積依頼"),
    ("order", "受注"),
    ("delivery", "納品"),
    ("invoice", "請求"),
]
_FIELD_TYPES = ["text", "long_text", "integer", "date", "boolean", "choice", "email", "url"]
_OBJECTS = ["company", "department", "contact"]


def _label(words: list[str], i: int) -> str:
    return f"{words[i % len(words)]}{i // len(words) + 1}" if i >= len(words) else words[i]


def large_config() -> dict[str, Any]:
    """A realistic, valid, > 500 KB configuration of a call-center outsourcer."""
    labels = dict(DEFAULT_LABELS)
    labels.update(
        {
            "company.name": "取引先名",
            "contact.name": "お客様氏名",
            "activity.kind": "応対種別",
            "activity.content": "応対内容",
        }
    )
    checkboxes = [
        {
            "index": i,
            "label": _label(_CHECKBOXES, i - 1) if i <= 44 else f"予備{i}",
            "enabled": i <= 44,
        }
        for i in range(1, CHECKBOX_COUNT + 1)
    ]
    picklists: list[dict[str, Any]] = []
    kinds: list[dict[str, Any]] = [
        {"code": code, "label": label, "active": True} for code, label in _ACTIVITY_KINDS
    ]
    kinds += [
        {"code": f"kind_{j:02d}", "label": f"{_WORDS[j]}対応", "active": j % 9 != 0}
        for j in range(len(kinds), 50)
    ]
    picklists.append({"code": "activity_kind", "label": "対応種別", "values": kinds})
    for i in range(1, 200):
        topic = _label(_TOPICS, i - 1)
        picklists.append(
            {
                "code": f"pl_{i:03d}",
                "label": topic,
                "values": [
                    {
                        "code": f"v_{j:02d}",
                        "label": f"{_WORDS[(i + j) % len(_WORDS)]}（{j + 1}）",
                        "active": (i + j) % 13 != 0,
                    }
                    for j in range(50)
                ],
            }
        )
    memo_fields = [
        {
            "index": i,
            "label": f"{_TOPICS[i - 1]}メモ" if i % 2 else _TOPICS[i - 1],
            "type": "text" if i % 2 else "picklist",
            "picklist": None if i % 2 else f"pl_{i:03d}",
        }
        for i in range(1, MEMO_COUNT + 1)
    ]
    customer = []
    for code, label in [
        ("torihikisaki", "取引先"),
        ("hanbaisaki", "販売先"),
        ("shiiresaki", "仕入先"),
        ("gaichusaki", "外注先"),
        ("mikomi", "見込み客"),
        ("kyumin", "休眠客"),
    ]:
        customer.append({"code": code, "label": label, "parent": None})
        customer += [
            {"code": f"{code}_{k}", "label": f"{label}（{_WORDS[20 + k]}）", "parent": code}
            for k in range(9)
        ]
    product = [
        {
            "code": f"pc_{k:02d}",
            "label": f"{_WORDS[30 + k % 20]}向け商品",
            "parent": None if k < 10 else f"pc_{k % 10:02d}",
        }
        for k in range(100)
    ]
    databases: list[dict[str, Any]] = []
    for d in range(100):
        fields = []
        for f in range(30):
            kind = _FIELD_TYPES[(d + f) % len(_FIELD_TYPES)]
            fields.append(
                {
                    "key": f"f_{f:02d}",
                    "label": f"{_label(_TOPICS, (d + f) % 20)}{f + 1}",
                    "type": kind,
                    "required": f < 2,
                    "options": [
                        {"code": f"o_{o}", "label": _WORDS[(d + f + o) % len(_WORDS)]}
                        for o in range(6)
                    ]
                    if kind == "choice"
                    else [],
                }
            )
        databases.append(
            {
                "code": f"db_{d:03d}",
                "label": f"{_label(_TOPICS, d)}台帳",
                "attached_to": _OBJECTS[d % 3],
                "fields": fields,
            }
        )
    roles = [
        {
            "code": f"team_{r}",
            "label": f"コールセンター{r + 1}課",
            "permissions": ["records.read", "records.write", "print"],
        }
        for r in range(10)
    ]
    enabled = [c["index"] for c in checkboxes if c["enabled"]]
    class_codes = [c["code"] for c in customer]
    workflows = []
    for w in range(500):
        obj = _OBJECTS[w % 3]
        db = databases[(w * 7) % 100]
        db_obj = db["attached_to"]
        db_field = f"{db_obj}.{db['code']}.f_{w % 30:02d}"
        event = ("created", "updated", "field_changed")[w % 3]
        trigger = {
            "event": event,
            "field": (db_field if w % 2 else f"{obj}.note") if event == "field_changed" else None,
        }
        rules = [
            {
                "field": f"contact.memo_{w % 10 + 1}",
                "op": "contains",
                "value": _WORDS[w % len(_WORDS)],
            },
            {"field": f"company.checkbox_{enabled[w % len(enabled)]}", "op": "eq", "value": True},
            {"field": db_field, "op": "not_empty", "value": None},
        ][: 1 + w % 3]
        actions: list[dict[str, Any]] = [
            {"type": "set_checkbox", "index": enabled[(w * 3) % len(enabled)], "checked": True},
            {
                "type": "create_activity",
                "kind": kinds[w % 50]["code"],
                "content": f"ワークフロー「{_WORDS[w % len(_WORDS)]}」により自動登録しました。",
            },
            {
                "type": "notify",
                "role": f"team_{w % 10}" if w % 4 else "admin",
                "message": "担当者は内容を確認し、24時間以内にお客様へご連絡ください。",
            },
            {"type": "add_classification", "classification": class_codes[w % len(class_codes)]},
            {"type": "set_field", "field": f"{obj}.note", "value": "自動更新"},
        ][: 2 + w % 4]
        workflows.append(
            {
                "code": f"wf_{w:03d}",
                "label": f"{_WORDS[w % len(_WORDS)]}{_label(_TOPICS, w % 20)}自動処理{w + 1}",
                "active": w % 11 != 0,
                "object": obj,
                "trigger": trigger,
                "conditions": {"match": "any" if w % 5 == 0 else "all", "rules": rules},
                "actions": actions,
            }
        )
    blueprints = []
    for b in range(10):
        source = picklists[1 + b]
        states = [{"code": v["code"], "label": v["label"]} for v in source["values"][:8]]
        blueprints.append(
            {
                "code": f"bp_{b}",
                "label": f"{source['label']}の進捗",
                "object": _OBJECTS[b % 3],
                "picklist": source["code"],
                "initial_state": states[0]["code"],
                "states": states,
                "transitions": [
                    {
                        "code": f"t_{s}",
                        "label": f"{states[s + 1]['label']}へ進める",
                        "from_state": states[s]["code"],
                        "to_state": states[s + 1]["code"],
                        "allowed_roles": ["admin", f"team_{s}"],
                        "required_fields": [f"{_OBJECTS[b % 3]}.note"],
                    }
                    for s in range(7)
                ],
            }
        )
    return {
        "schema_version": 1,
        "mode": "corporate",
        "labels": labels,
        "memo_fields": memo_fields,
        "checkboxes": checkboxes,
        "picklists": picklists,
        "classifications": {"customer": customer, "product": product},
        "custom_databases": databases,
        "workflows": workflows,
        "blueprints": blueprints,
        "roles": roles,
        "input_rules": {
            "company_suffix": "kabushiki_kaisha",
            "phone_format": "hyphen",
            "normalize_width": True,
            "duplicate_check_company": True,
            "duplicate_check_contact": True,
        },
        "settings": {
            "recent_customers": 20,
            "personal_info_logging": True,
            "news": "年末年始（12/29〜1/3）は休業いたします。",
            "link_buttons": [
                {
                    "code": f"map_{k}",
                    "label": f"地図{k + 1}",
                    "object": "company",
                    "url_template": "https://maps.example.jp/?q={company.address}",
                }
                for k in range(5)
            ],
            "external_systems": [
                {"code": f"ext_{k}", "label": f"基幹システム{k + 1}"} for k in range(3)
            ],
        },
    }


# --------------------------------------------------------------------------- databases


@contextmanager
def sqlite_url(prefix: str = "provisioner-bench-") -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield f"sqlite:///{tmp}/bench.db"


@contextmanager
def postgres_url(database: str = PG_BENCH_DB) -> Iterator[str]:
    """A fresh PostgreSQL database of this name (each benchmark its own), dropped afterwards."""
    admin_url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        yield admin_url.set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


#: the login role the benchmarks run the application as on PostgreSQL: neither superuser
#: nor BYPASSRLS, so row-level security applies, as in production (provisioner.db.roles)
RUNTIME_ROLE = "provisioner_bench_runtime"
#: measure as the administrator instead (``--as-superuser``: row-level security skipped)
AS_SUPERUSER = False


def app_engine(url: str) -> Engine:
    """The application's engine for a benchmark database: migrated (as the administrator
    ``url`` names), and on PostgreSQL connected as :data:`RUNTIME_ROLE` with the rows of
    every table granted -- what ships -- unless ``--as-superuser`` was given."""
    admin = make_engine(url)
    migrate.upgrade(admin)
    if admin.dialect.name != "postgresql" or AS_SUPERUSER:
        return admin
    admin.dispose()
    return runtime_engine(url)


def runtime_engine(url: str) -> Engine:
    """PostgreSQL: an engine of :data:`RUNTIME_ROLE` on the (migrated) database ``url``
    names, the role created if missing and granted the rows of every table."""
    admin = make_engine(url)
    with admin.begin() as conn:
        roles.ensure_role(conn, RUNTIME_ROLE, login=True)
        roles.grant_runtime(conn, RUNTIME_ROLE)
    admin.dispose()
    return make_engine(_as_runtime_role(url))


def _as_runtime_role(url: str) -> str:
    parsed = make_url(url).set(username=RUNTIME_ROLE, password=None)
    return parsed.render_as_string(hide_password=False)


def runtime_url(url: str) -> str:
    """``url`` as the application connects in the benchmarks (see :func:`app_engine`)."""
    if make_url(url).get_backend_name() != "postgresql" or AS_SUPERUSER:
        return url
    return _as_runtime_role(url)


def role_measured(url: str) -> str:
    """Which database role the figures were measured as (for the report)."""
    if make_url(url).get_backend_name() != "postgresql":
        return "SQLite (no roles)"
    if AS_SUPERUSER:
        return "the PostgreSQL superuser (row-level security skipped: --as-superuser)"
    return f"the runtime role {RUNTIME_ROLE} (row-level security applies)"


@contextmanager
def kept_database(backend: str, name: str, keep: bool) -> Iterator[tuple[str, bool]]:
    """(url, fresh): scratch database ``name`` (an SQLite file in the temporary
    directory, or a PostgreSQL database), new -- or, with ``keep``, the one an
    earlier ``--keep`` run left, which is then left in place again."""
    if backend == "sqlite":
        path = Path(tempfile.gettempdir()) / f"{name}.db"

        def remove() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        fresh = not (keep and path.exists())
        if fresh:
            remove()
        try:
            yield f"sqlite:///{path}", fresh
        finally:
            if not keep:
                remove()
        return
    admin_url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            fresh = not (keep and exists)
            if fresh:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.set(database=name).render_as_string(hide_password=False), fresh
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def server_version(app: Provisioner) -> str:
    if app.engine.url.get_backend_name() == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with app.engine.connect() as conn:
        return "PostgreSQL " + str(conn.execute(text("SHOW server_version")).scalar())


# --------------------------------------------------------------------------- measuring


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``work()`` (after a collection, so garbage from setup is not billed)."""
    gc.collect()
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


@dataclass
class Samples:
    export: list[float] = field(default_factory=list)
    export_floor: list[float] = field(default_factory=list)
    receive: list[float] = field(default_factory=list)
    receive_floor: list[float] = field(default_factory=list)
    receive_new: list[float] = field(default_factory=list)
    apply: list[float] = field(default_factory=list)


@dataclass
class Result:
    backend: str
    server: str
    runs: int
    config_bytes: int
    bundle_bytes: int
    export: float
    export_floor: float
    receive: float
    receive_floor: float
    #: receive of a configuration this process has not validated before (its first arrival)
    receive_new: float
    apply: float
    #: slowest run of each operation (a run that paid an SQLite WAL checkpoint shows here)
    export_max: float = 0.0
    receive_max: float = 0.0
    receive_new_max: float = 0.0
    apply_max: float = 0.0

    @property
    def export_ratio(self) -> float:
        return self.export / self.export_floor

    @property
    def receive_ratio(self) -> float:
        return self.receive / self.receive_floor

    @property
    def receive_new_ratio(self) -> float:
        return self.receive_new / self.receive_floor


class Bench:
    """A source tenant with the large configuration and a target at the default one."""

    def __init__(self, url: str, config: dict[str, Any]) -> None:
        self.url = url
        engine = app_engine(url)
        self.app = Provisioner(engine, master_key=MasterKey(secrets.token_bytes(32)))
        with self.app.transaction() as ctx:
            for slug, name in (
                ("partner", "株式会社パートナーコールセンター"),
                ("client", "株式会社クライアント商事"),
            ):
                tenants.create(ctx, slug, name=name, plan="standard")
                tenants.add_user(ctx, f"{slug}-admin", tenant_slug=slug, role="admin")
        self.source = self._actor("partner")
        self.target = self._actor("client")
        with self.app.transaction() as ctx:
            configs.set_sections(ctx, self.source, actors.get_tenant(ctx, "partner"), config)
        # the floors sign and verify with a key of the same kind, outside any service
        self.floor_key = Ed25519PrivateKey.generate()
        self.source_config = config

    def _actor(self, slug: str) -> Actor:
        with self.app.transaction() as ctx:
            return actors.resolve(ctx, f"{slug}-admin", slug)

    def new_key(self) -> str:
        with self.app.transaction() as ctx:
            return copykeys.generate(ctx, self.target, actors.get_tenant(ctx, "client")).text

    def export(self, key: str) -> bytes:
        with self.app.transaction() as ctx:
            return transfers.export(ctx, self.source, key_text=key)

    def receive(self, raw: bytes) -> int:
        with self.app.transaction() as ctx:
            return transfers.receive(ctx, self.target, raw).id

    def approve(self, transfer_id: int) -> transfers.Decision:
        with self.app.transaction() as ctx:
            decision = transfers.approve(ctx, self.target, transfer_id)
        if decision.outcome != "applied":
            raise SystemExit(f"approve did not apply: {decision.outcome} {decision.message}")
        return decision

    def check_applied(self) -> None:
        with self.app.transaction() as ctx:
            source = configs.current(ctx, actors.get_tenant(ctx, "partner"))
            target = configs.current(ctx, actors.get_tenant(ctx, "client"))
        # copied workflows land paused (safe activation): the rest is the source's
        expected = {**source.data, "workflows": paused_arrivals(source.data["workflows"], [])}
        if target.data != expected:
            raise SystemExit("after approve the target's configuration differs from the source's")

    def reset_target(self) -> None:
        with self.app.transaction() as ctx:
            configs.rollback(
                ctx, self.target, actors.get_tenant(ctx, "client"), 1, reason="benchmark reset"
            )

    def export_floor(self, payload_data: Any) -> None:
        body = orjson.dumps(payload_data)
        self.floor_key.sign(body)

    def receive_floor(self, payload: bytes, signature: bytes) -> None:
        self.floor_key.public_key().verify(signature, payload)
        orjson.loads(payload)

    def reject(self, transfer_id: int) -> None:
        with self.app.transaction() as ctx:
            transfers.reject(ctx, self.target, transfer_id, reason="benchmark")

    def one_run(self, samples: Samples | None) -> int:
        # first arrival of the content: received with no memory of having validated it
        # (as from another deployment, or a new template), then rejected (untimed)
        first = self.export(self.new_key())
        forget_validated()
        t_receive_new, first_id = timed(lambda: self.receive(first))
        self.reject(first_id)
        key = self.new_key()
        t_export, raw = timed(lambda: self.export(key))
        _, payload, _ = parse_envelope(raw)
        payload_data = orjson.loads(payload)
        signature = self.floor_key.sign(payload)
        t_export_floor, _ = timed(lambda: self.export_floor(payload_data))
        t_receive_floor, _ = timed(lambda: self.receive_floor(payload, signature))
        t_receive, transfer_id = timed(lambda: self.receive(raw))
        t_apply, _ = timed(lambda: self.approve(transfer_id))
        if samples is None:  # warm-up: check that a real apply happened
            self.check_applied()
        self.reset_target()
        if samples is not None:
            samples.export.append(t_export)
            samples.export_floor.append(t_export_floor)
            samples.receive.append(t_receive)
            samples.receive_floor.append(t_receive_floor)
            samples.receive_new.append(t_receive_new)
            samples.apply.append(t_apply)
        return len(raw)

    def breakdown(self, runs: int) -> str:
        """Medians of the stages of export, receive and approve, timed directly.

        The stages replay what the services do on the same bundle; what the
        services take beyond their sum is the rest of their database work
        (queries, ORM, audit rows). The ``db:`` rows time plain SQL (no ORM) on
        this backend: the big rows the services write and read, commit included.
        """
        times: dict[str, list[float]] = {}
        stored = canonical_bytes(self.source_config)
        key = self.new_key()
        raw = self.export(key)
        public = self.floor_key.public_key()
        base = default_document().to_data()
        kind = "application/vnd.provisioner.bundle+json"

        def stage(name: str, work: Callable[..., Any], *args: Any) -> Any:
            seconds, result = timed(lambda: work(*args))
            times.setdefault(name, []).append(seconds)
            return result

        def new_version(result: dict[str, Any]) -> str:
            body = canonical_bytes(result)
            sha256_hex(body)
            return body.decode()

        def make_plan(changes: list[config_diff.Change]) -> dict[str, Any]:
            return {
                "summary": config_diff.summarize(changes),
                "changes": [c.to_dict() for c in changes],
            }

        def payload_of(config: dict[str, Any]) -> dict[str, Any]:
            return {**orjson.loads(parse_envelope(raw)[1]), "config": config}

        def read_payload(payload: bytes) -> dict[str, Any]:
            data: dict[str, Any] = dict_validator(_PayloadContract).validate_json(payload)
            data["config"] = {k: v for k, v in data["config"].items() if v is not None}
            return data

        def config_json_of(payload: bytes) -> bytes:
            start = payload.index(b'"config":') + len(b'"config":')
            return payload[start : payload.rindex(b',"created_at":"', start)]

        def canonical_check(data: dict[str, Any], payload: bytes) -> bool:
            return canonical_bytes(data) == payload

        def digests(payload: bytes, config_json: bytes) -> None:
            sha256_hex(payload)
            sha256_hex(config_json)

        engine = self.app.engine
        postgres = engine.dialect.name == "postgresql"
        admin = make_engine(self.url)  # the runtime role may not create tables
        with admin.begin() as conn:  # the transfer row's big columns, typed and compressed alike
            conn.execute(
                text(
                    "CREATE TABLE bench_scratch (id INTEGER PRIMARY KEY, "
                    "body TEXT, blob " + ("BYTEA" if postgres else "BLOB") + ")"
                )
            )
            if postgres:
                conn.execute(
                    text(
                        "ALTER TABLE bench_scratch ALTER COLUMN body SET COMPRESSION "
                        "lz4, ALTER COLUMN blob SET COMPRESSION lz4"
                    )
                )
                if engine.url.username != admin.url.username:
                    conn.execute(
                        text(f"GRANT SELECT, INSERT ON bench_scratch TO {engine.url.username}")
                    )
        admin.dispose()

        def db_write(body: str, blob: bytes | None, row: int) -> None:
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO bench_scratch (id, body, blob) VALUES (:id, :body, :blob)"),
                    {"id": row, "body": body, "blob": blob},
                )

        def db_read(row: int) -> None:
            with engine.begin() as conn:
                conn.execute(
                    text("SELECT body, blob FROM bench_scratch WHERE id = :id"), {"id": row}
                ).one()

        for n in range(runs):
            config_data = stage("export: orjson.loads of the stored version", orjson.loads, stored)
            body = stage(
                "export: canonical_bytes of the payload", canonical_bytes, payload_of(config_data)
            )
            stage(
                "export: sign_envelope (PAE, Ed25519, base64, envelope JSON)",
                sign_envelope,
                body,
                self.floor_key,
            )
            _, payload, _ = stage(
                "receive: parse_envelope (strict JSON + base64)", parse_envelope, raw
            )
            signature = self.floor_key.sign(pae(kind, payload))
            stage(
                "receive: Ed25519 verify of PAE(payload)",
                lambda p, s: public.verify(s, pae(kind, p)),
                payload,
                signature,
            )
            data = stage(
                "receive: payload parsed and validated in one pass (validate_json)",
                read_payload,
                payload,
            )
            stage("  for comparison: orjson.loads alone", orjson.loads, payload)
            stage(
                "receive: canonical check (canonical_bytes == payload bytes)",
                canonical_check,
                data,
                payload,
            )
            stage(
                "receive: BundlePayload.model_validate (header)", BundlePayload.model_validate, data
            )
            forget_validated()
            span = _config_span(payload)
            assert span is not None
            _remember(digest_of(config_json_of(payload)), data["config"])
            stage(
                "receive, content seen before: digest of the configuration + header "
                "validated in place of it (instead of the three rows above)",
                lambda p, s: _read_known(p, s, digest_of(p[s[0] : s[1]])),
                payload,
                span,
            )
            forget_validated()
            config = data["config"]
            start = payload.index(b'"config":') + len(b'"config":')
            config_json = payload[start : payload.rindex(b',"created_at":"', start)]
            stage(
                "receive: sha256 of the payload and of the configuration",
                digests,
                payload,
                config_json,
            )
            result = stage("receive+approve: combine", combine, base, config)
            stage("receive+approve: check_references (references.check)", check_references, result)
            changes = stage("receive+approve: diff", config_diff.diff, base, result)
            plan = stage("receive+approve: plan dicts (summarize, to_dict)", make_plan, changes)
            plan_json = stage("receive: plan JSON column write (orjson.dumps)", orjson.dumps, plan)
            stage("approve: plan JSON column read (orjson.loads), once", orjson.loads, plan_json)
            version = stage(
                "approve: canonical_bytes + sha256 of the new version", new_version, result
            )
            stage(
                "db: INSERT+COMMIT of the transfer row (configuration bytes + plan JSON)",
                db_write,
                plan_json.decode(),
                config_json,
                2 * n,
            )
            stage(
                "db: SELECT of that row (once; approve loads the transfer 3 times)", db_read, 2 * n
            )
            stage(
                "db: INSERT+COMMIT of the new version's document",
                db_write,
                version,
                None,
                2 * n + 1,
            )
        # the services again with the cyclic garbage collector off: its share of their time
        no_gc = Samples()
        gc.disable()
        try:
            for _ in range(runs):
                self.one_run(no_gc)
        finally:
            gc.enable()
        times["services with the cyclic GC disabled: export+sign"] = no_gc.export
        times["services with the cyclic GC disabled: receive"] = no_gc.receive
        times["services with the cyclic GC disabled: approve+apply"] = no_gc.apply
        sizes = (
            f"sizes: stored version {len(stored) / 1024:,.0f} KiB, bundle file "
            f"{len(raw) / 1024:,.0f} KiB, plan JSON {len(plan_json) / 1024:,.0f} KiB"
        )
        lines = ["| stage | median |", "| --- | ---: |"]
        lines += [
            f"| {name} | {statistics.median(values) * 1e3:.2f} ms |"
            for name, values in times.items()
        ]
        return "\n".join(lines) + "\n\n" + sizes + "\n"

    def profile(self, runs: int) -> str:
        """cProfile of receive and of approve (cumulative), over ``runs`` runs."""
        receive_prof, apply_prof, export_prof = (
            cProfile.Profile(),
            cProfile.Profile(),
            cProfile.Profile(),
        )
        for _ in range(runs):
            key = self.new_key()
            raw = export_prof.runcall(self.export, key)
            transfer_id = receive_prof.runcall(self.receive, raw)
            apply_prof.runcall(self.approve, transfer_id)
            self.reset_target()
        out = io.StringIO()
        for name, prof in (
            ("export", export_prof),
            ("receive", receive_prof),
            ("approve", apply_prof),
        ):
            out.write(f"\n===== cProfile: {name} ({runs} runs), by cumulative time =====\n")
            stats = pstats.Stats(prof, stream=out)
            stats.sort_stats("cumulative").print_stats(35)
            out.write(f"\n----- {name}: by own time -----\n")
            stats.sort_stats("tottime").print_stats(20)
        return out.getvalue()


def run_backend(
    backend: str, url: str, config: dict[str, Any], repeat: int, profile_runs: int, breakdown: bool
) -> tuple[Result, str, str]:
    bench = Bench(url, config)
    try:
        for _ in range(2):  # warm-up: validator caches, connection pool, statement caches
            bench.one_run(None)
        samples = Samples()
        bundle_bytes = 0
        for i in range(repeat):
            bundle_bytes = bench.one_run(samples)
            print(
                f"  {backend} run {i + 1}/{repeat}: export {samples.export[-1] * 1e3:.1f} ms, "
                f"receive {samples.receive[-1] * 1e3:.1f} ms, "
                f"apply {samples.apply[-1] * 1e3:.1f} ms",
                file=sys.stderr,
            )
        med = statistics.median
        result = Result(
            backend=backend,
            server=server_version(bench.app),
            runs=repeat,
            config_bytes=len(canonical_bytes(config)),
            bundle_bytes=bundle_bytes,
            export=med(samples.export),
            export_floor=med(samples.export_floor),
            receive=med(samples.receive),
            receive_floor=med(samples.receive_floor),
            receive_new=med(samples.receive_new),
            apply=med(samples.apply),
            export_max=max(samples.export),
            receive_max=max(samples.receive),
            receive_new_max=max(samples.receive_new),
            apply_max=max(samples.apply),
        )
        stages = bench.breakdown(repeat) if breakdown else ""
        profile = bench.profile(profile_runs) if profile_runs else ""
        return result, stages, profile
    finally:
        bench.app.engine.dispose()


def measure_backend(
    backend: str, config: dict[str, Any], repeat: int, profile_runs: int, breakdown: bool
) -> tuple[Result, str, str]:
    """:func:`run_backend` on a scratch database of that backend (made and dropped here)."""
    urls = sqlite_url if backend == "sqlite" else postgres_url
    with urls() as url:
        return run_backend(backend, url, config, repeat, profile_runs, breakdown)


# --------------------------------------------------------------------------- reporting


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(results: list[Result]) -> str:
    rows = [
        "| database | operation | median | slowest | floor (median) | ratio | target | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        rows += [
            f"| {r.server} | export+sign | {r.export * 1e3:.1f} ms | {r.export_max * 1e3:.1f} ms | "
            f"{r.export_floor * 1e3:.2f} ms | {r.export_ratio:.2f}x | <= {EXPORT_TARGET:g}x | "
            f"{verdict(r.export_ratio <= EXPORT_TARGET)} |",
            f"| {r.server} | receive, content seen before (verify, header, plan, store) | "
            f"{r.receive * 1e3:.1f} ms | {r.receive_max * 1e3:.1f} ms | "
            f"{r.receive_floor * 1e3:.2f} ms | "
            f"{r.receive_ratio:.2f}x | <= {RECEIVE_TARGET:g}x | "
            f"{verdict(r.receive_ratio <= RECEIVE_TARGET)} |",
            f"| {r.server} | receive, new content (verify, parse, validate, plan, store) | "
            f"{r.receive_new * 1e3:.1f} ms | {r.receive_new_max * 1e3:.1f} ms | "
            f"{r.receive_floor * 1e3:.2f} ms | "
            f"{r.receive_new_ratio:.2f}x | <= {RECEIVE_TARGET:g}x | "
            f"{verdict(r.receive_new_ratio <= RECEIVE_TARGET)} |",
            f"| {r.server} | approve+apply | {r.apply * 1e3:.1f} ms | {r.apply_max * 1e3:.1f} ms "
            "| - | - | "
            f"<= {APPLY_TARGET_MS:g} ms | {verdict(r.apply * 1e3 <= APPLY_TARGET_MS)} |",
        ]
    return "\n".join(rows)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import cryptography
    import pydantic_core
    import sqlalchemy

    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; "
        f"orjson {orjson.__version__}, pydantic-core {pydantic_core.__version__}, "
        f"cryptography {cryptography.__version__}, SQLAlchemy {sqlalchemy.__version__}"
    )


def section(
    results: list[Result], command: str, when: str, stages: str, load: float | None = None
) -> str:
    first = results[0]
    if stages:
        stages = f"""
Where the time goes: the stages of export, receive and approve replayed on the
same bundle and timed directly (medians of {first.runs} runs). The `db:` rows are
plain SQL on that backend (no ORM), commit included. Each stage is timed right
after a `gc.collect()`; the services, which allocate hundreds of thousands of
objects, also pay cyclic-GC passes: the last rows time them with the collector
off. What an operation takes beyond its stages and GC is the rest of its
database work (ORM, JSON columns, other queries, audit rows).

{stages}
"""
    loaded = "" if load is None else f" (load average before the run: {load:.2f})"
    return f"""{SECTION_TITLE}

Measured {when} by `bench/bench_core.py`{loaded}. Machine: {machine()}.

Reproduce: `{command}`

Workload: a partner tenant's configuration (48 checkboxes, 10 memo fields,
200 picklists x 50 values, 500 workflows, 100 custom databases x 30 fields,
160 classifications, 10 blueprints, 10 roles, Japanese labels):
{first.config_bytes / 1024:,.0f} KiB of canonical JSON, a {first.bundle_bytes / 1024:,.0f} KiB \
bundle file.
Each run exports it bound to a fresh copy key of a tenant still at the default
configuration (so the plan lists every item as added), receives it there and
approves it; the target is rolled back between runs (untimed). Receive is
timed twice per run: "new content" is a first bundle received after the process
was made to forget every configuration it validated (as for content from
another deployment or a new template; then rejected, untimed), "content seen
before" the second bundle of the run, the same configuration in a new bundle
(new id, copy key and signature: a template received again, by this or another
tenant of the deployment). Each database
is measured in a fresh process of its own, on a scratch database.
Every operation runs in its own transaction, commit included. Floors, timed in
the same run on the same bytes: export = `orjson.dumps` of the payload data +
Ed25519 signing of those bytes; receive = Ed25519 verification + `orjson.loads`
of the payload. Medians of {first.runs} runs after 2 warm-up runs; ratio =
median / floor median; "slowest" is the slowest of those runs.

How the service keeps to the floors: the envelope's base64 payload decoded by
SIMD code (`pybase64`, its result checked by encoding it back); a strict
one-pass parse and schema check of the payload in pydantic-core
(`validate_json`) compared byte for byte with its canonical form, done once per
distinct configuration in a process (a configuration whose canonical bytes have
the digest of one validated before is not parsed or validated again: only the
payload around it, its header, is validated and checked canonical); the cyclic
garbage collector paused while a document's hundreds of thousands of
cycle-free containers are built (`provisioner.gcpause`); the configuration
stored once, as the bytes that were verified (the transfer row keeps the
bundle file without the payload it carries verbatim, and rebuilds it on
demand), inserted with `ON CONFLICT DO NOTHING` rather than flushed inside a
savepoint (a configuration the process already holds is looked up first, and
not sent to the database again when it is stored); disk usage summed from
covering indexes; approving a whole document copies the stored, already
validated configuration from the transfer row to the new version row inside
the database (`INSERT ... SELECT`), so it never travels through Python again.
On SQLite the WAL is checkpointed every 32 MB, not at SQLite's default 4 MB,
which made nearly every approval pay a checkpoint and its fsyncs; the run that
does pay one shows in "slowest". On PostgreSQL the large columns are TOASTed
with lz4 rather than pglz.

{table(results)}

{receive_verdict(results)}
{stages}"""


def receive_verdict(results: list[Result]) -> str:
    """The receive target of issue 16 in words: met or not met, each way and backend."""

    def said(ratio: float) -> str:
        return f"{ratio:.2f}x, {'met' if ratio <= RECEIVE_TARGET else 'not met'}"

    parts = [
        f"{r.server.split(' (')[0]}: new content {said(r.receive_new_ratio)}; content seen "
        f"before {said(r.receive_ratio)}"
        for r in results
    ]
    return f"Receive at most {RECEIVE_TARGET:g}x of its floor (issue 16): " + "; ".join(parts) + "."


HEADER = """# Performance

Each section is written by its benchmark script. Numbers are medians, and
ratios to a floor measured in the same run, on a 2-core shared machine:
absolute times drift from run to run and machine to machine, the ratios much
less. Re-run the command given in a section to reproduce it.

Every benchmark measures the product as shipped: it prints which implementation it
measures (the native extension `_postings`, or the Python fallback when the extension
is not built) and where `provisioner` was imported from, and refuses to measure the
fallback unless given `--allow-fallback`; a section written from such a run says
"Implementation measured: Python fallback ... NOT the product's". `python
bench/bench_X.py` measures the installed package when there is one (the checkout is
only appended to `sys.path`, for the `bench` package), else the checkout;
`python -m bench.bench_X` from a checkout measures that checkout.
"""


FALLBACK_OPTION = "--allow-fallback"


def implementation() -> str:
    """Which implementation the figures are of: the native extension or the Python fallback,
    and where ``provisioner`` was imported from."""
    import provisioner
    from provisioner.services.crm import search_index

    path = Path(provisioner.__file__).resolve().parent
    where = "this checkout" if path.is_relative_to(ROOT) else str(path)
    if search_index.NATIVE:
        return f"native extension (_postings) in use; provisioner from {where}"
    return (
        f"Python fallback (the native extension _postings is not built; figures taken "
        f"with {FALLBACK_OPTION} are NOT the product's); provisioner from {where}"
    )


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parser``'s arguments plus ``--allow-fallback``; prints which implementation is
    measured and refuses to measure the Python fallback unless that option is given."""
    parser.add_argument(
        FALLBACK_OPTION,
        action="store_true",
        help="measure even when the native extension is not built (the "
        "figures are then labelled as the Python fallback's)",
    )
    parser.add_argument(
        "--as-superuser",
        action="store_true",
        help="PostgreSQL: run the application as the administrator, which skips "
        "row-level security (default: a runtime role under it, as in production)",
    )
    args = parser.parse_args()
    global AS_SUPERUSER
    AS_SUPERUSER = args.as_superuser
    from provisioner.services.crm import search_index

    print(f"implementation: {implementation()}", file=sys.stderr, flush=True)
    if not search_index.NATIVE and not args.allow_fallback:
        parser.exit(
            2,
            "refusing to measure the Python fallback as the product: build the "
            "native extension (pip install . with a C compiler, or python setup.py "
            f"build_ext --inplace in a checkout) or pass {FALLBACK_OPTION}\n",
        )
    return args


def write_section(body: str, title: str = SECTION_TITLE) -> None:
    """Add or replace one script's section (``title``) of docs/performance.md, leaving the
    rest; the section says which implementation was measured (:func:`implementation`)."""
    head, _, rest = body.partition("\n")
    role = (
        "the administrator (row-level security skipped: --as-superuser)"
        if AS_SUPERUSER
        else f"the runtime role {RUNTIME_ROLE} (row-level security applies)"
    )
    body = (
        f"{head}\n\nImplementation measured: {implementation()}. PostgreSQL figures: the "
        f"application connected as {role}.\n{rest}"
    )
    existing = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else HEADER
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(existing):
        updated = pattern.sub(lambda _: body + "\n", existing, count=1)
    else:
        updated = existing.rstrip("\n") + "\n\n" + body
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=15, help="timed runs (default 15)")
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=5,
        default=0,
        metavar="RUNS",
        help="also print a cProfile of export, receive, approve over RUNS runs",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the database-free stages of receive and approve",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; do not update docs/performance.md"
    )
    args = parse_args(parser)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    config = large_config()
    document_from_data(config, what="benchmark configuration")  # valid, or this raises
    size = len(canonical_bytes(config))
    if size < 500 * 1024:
        raise SystemExit(f"benchmark configuration is only {size:,} bytes (< 500 KB)")
    print(f"configuration: {size:,} bytes of canonical JSON", file=sys.stderr)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    backends = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results, profiles, stages = [], [], ""
    for backend in backends:
        # each backend in a fresh process: neither inherits the other's heap (whose size
        # the cyclic GC's full passes pay for) nor its warm caches
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            result, breakdown, profile = pool.submit(
                measure_backend, backend, config, args.repeat, args.profile, args.breakdown
            ).result()
        results.append(result)
        if breakdown:
            stages += f"\n{result.server}:\n\n{breakdown}"
        if profile:
            profiles.append(f"\n##### {backend}\n{profile}")
    stages = stages.strip("\n")

    command = f".venv/bin/python bench/bench_core.py --db {args.db} --repeat {args.repeat}" + (
        " --breakdown" if args.breakdown else ""
    )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = section(results, command, when, stages, load)
    print(text)
    for profile in profiles:
        print(profile)
    if not args.no_write:
        write_section(text)
        print(f"wrote section {SECTION_TITLE!r} of {DOC_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
