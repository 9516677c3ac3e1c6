"""Realistic Japanese sample customers for demos and benchmarks (built-in lists, no downloads).

    n = seed_contacts(ctx, actor, 1000, seed=42)     # admin ('import' permission)

Names with matching kana, companies with 株式会社 / 有限会社, addresses from real
prefectures and wards, landline and mobile numbers, memos, checkboxes. The same
seed always produces the same rows. Rows are inserted in batches and indexed for
search (:class:`provisioner.services.crm.search_index.Builder`) in the same
transaction.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from provisioner.db.crm_models import CrmCompany, CrmContact
from provisioner.services import audit
from provisioner.services.actors import Actor
from provisioner.services.crm import records, scope, search_index, tally
from provisioner.services.crm.text import company_suffix, name_key, phone_digits
from provisioner.services.provisioning import quotas
from provisioner.services.transaction import Context

SURNAMES = (
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
    ("吉田", "ヨシダ"),
    ("山田", "ヤマダ"),
    ("佐々木", "ササキ"),
    ("山口", "ヤマグチ"),
    ("松本", "マツモト"),
    ("井上", "イノウエ"),
    ("木村", "キムラ"),
    ("林", "ハヤシ"),
    ("斎藤", "サイトウ"),
    ("清水", "シミズ"),
    ("山崎", "ヤマザキ"),
    ("森", "モリ"),
    ("池田", "イケダ"),
    ("橋本", "ハシモト"),
    ("阿部", "アベ"),
    ("石川", "イシカワ"),
    ("山下", "ヤマシタ"),
    ("中島", "ナカジマ"),
    ("石井", "イシイ"),
    ("小川", "オガワ"),
    ("前田", "マエダ"),
    ("岡田", "オカダ"),
    ("長谷川", "ハセガワ"),
    ("藤田", "フジタ"),
    ("後藤", "ゴトウ"),
    ("近藤", "コンドウ"),
    ("村上", "ムラカミ"),
    ("遠藤", "エンドウ"),
    ("青木", "アオキ"),
    ("坂本", "サカモト"),
)
GIVEN = (
    ("太郎", "タロウ"),
    ("一郎", "イチロウ"),
    ("健太", "ケンタ"),
    ("大輔", "ダイスケ"),
    ("翔太", "ショウタ"),
    ("拓也", "タクヤ"),
    ("直樹", "ナオキ"),
    ("浩", "ヒロシ"),
    ("誠", "マコト"),
    ("隆", "タカシ"),
    ("花子", "ハナコ"),
    ("陽子", "ヨウコ"),
    ("美咲", "ミサキ"),
    ("さくら", "サクラ"),
    ("愛", "アイ"),
    ("恵子", "ケイコ"),
    ("由美", "ユミ"),
    ("真由美", "マユミ"),
    ("優子", "ユウコ"),
    ("彩", "アヤ"),
    ("翼", "ツバサ"),
    ("蓮", "レン"),
    ("陽菜", "ヒナ"),
    ("結衣", "ユイ"),
)
COMPANY_WORDS = (
    "山田",
    "東京",
    "日本",
    "大和",
    "富士",
    "新星",
    "光",
    "青葉",
    "朝日",
    "北斗",
    "三和",
    "丸高",
    "中央",
    "千代田",
    "浪速",
    "みらい",
    "桜",
    "昭和",
    "平成",
    "双葉",
)
COMPANY_KINDS = (
    "商事",
    "工業",
    "電機",
    "建設",
    "物産",
    "製作所",
    "システム",
    "食品",
    "運輸",
    "不動産",
    "印刷",
    "設計",
    "薬品",
    "興業",
    "技研",
)
PLACES = (
    ("東京都", "千代田区", "03"),
    ("東京都", "渋谷区", "03"),
    ("東京都", "新宿区", "03"),
    ("東京都", "世田谷区", "03"),
    ("大阪府", "大阪市北区", "06"),
    ("大阪府", "大阪市中央区", "06"),
    ("神奈川県", "横浜市西区", "045"),
    ("愛知県", "名古屋市中区", "052"),
    ("福岡県", "福岡市博多区", "092"),
    ("北海道", "札幌市中央区", "011"),
    ("京都府", "京都市下京区", "075"),
    ("兵庫県", "神戸市中央区", "078"),
    ("宮城県", "仙台市青葉区", "022"),
    ("広島県", "広島市中区", "082"),
)
TOWNS = ("本町", "栄町", "緑町", "中町", "旭町", "幸町", "錦町", "港町", "桜木町", "大手町")
TITLES = ("", "", "主任", "係長", "課長", "部長", "取締役", "代表取締役")
MEMOS = ("展示会で名刺交換", "紹介", "DM希望", "要フォロー", "既存顧客", "")


def _phone(rng: random.Random, area: str) -> str:
    rest = 10 - len(area)
    local = str(rng.randrange(10 ** (rest - 1), 10**rest))
    split = rest - 4
    return f"{area}-{local[:split]}-{local[split:]}"


def _mobile(rng: random.Random) -> str:
    return f"0{rng.choice((70, 80, 90))}-{rng.randrange(1000, 10000)}-{rng.randrange(1000, 10000)}"


def people(rng: random.Random, n: int, companies: list[str]) -> Iterator[dict[str, Any]]:
    for _ in range(n):
        (sn, sk), (gn, gk) = rng.choice(SURNAMES), rng.choice(GIVEN)
        pref, city, area = rng.choice(PLACES)
        yield {
            "name": f"{sn} {gn}",
            "kana": f"{sk} {gk}",
            "company": rng.choice(companies) if companies else "",
            "title": rng.choice(TITLES),
            "email": f"user{rng.randrange(10**7)}@example.jp",
            "phone": _phone(rng, area),
            "mobile": _mobile(rng) if rng.random() < 0.6 else "",
            "postal_code": f"{rng.randrange(100, 1000)}-{rng.randrange(10000):04d}",
            "address": f"{pref}{city}{rng.choice(TOWNS)}{rng.randrange(1, 10)}-"
            f"{rng.randrange(1, 30)}-{rng.randrange(1, 20)}",
            "memo_1": rng.choice(MEMOS),
            "checkboxes": rng.getrandbits(48) & rng.getrandbits(48) & rng.getrandbits(48),
        }


def company_names(rng: random.Random, n: int) -> list[str]:
    names = {
        f"{rng.choice(('株式会社', '有限会社', '株式会社'))}{rng.choice(COMPANY_WORDS)}"
        f"{rng.choice(COMPANY_KINDS)}"
        for _ in range(n)
    }
    return sorted(names)


def seed_contacts(ctx: Context, actor: Actor, n: int, *, seed: int = 0, batch: int = 5000) -> int:
    scope.enter(ctx, actor)
    scope.require(ctx, actor, "import", "seed sample data")
    doc = scope.config(ctx, actor.tenant_id)
    quotas.require_room_for_records(
        ctx, actor.tenant_id, 2 * n + max(1, min(300, n // 20)), what=f"{n} sample customers"
    )
    rng = random.Random(seed)
    enabled = sum(1 << (c.index - 1) for c in doc.checkboxes if c.enabled)
    now = ctx.clock.now()
    base = {
        "tenant_id": actor.tenant_id,
        "created_at": now,
        "created_by": actor.login,
        "updated_at": now,
        "updated_by": actor.login,
    }
    company_ids: dict[str, int] = {}
    stored_names: dict[str, str] = {}
    names = company_names(rng, max(1, min(300, n // 20))) if doc.mode == "corporate" else []
    for name in names:
        stored = company_suffix(name, doc.input_rules.company_suffix)
        company = CrmCompany(name=stored, name_norm=name_key(stored), **base)
        ctx.session.add(company)
        ctx.session.flush()
        company_ids[name] = company.id
        stored_names[name] = stored
    contact = records.TYPES["contact"]
    defaults = {
        k: (
            ""
            if kind in ("str", "text", "date", "codes")
            else 0
            if kind == "checkboxes"
            else False
            if kind == "bool"
            else None
        )
        for k, kind in contact.fields.items()
    }
    made = 0
    generator = people(rng, n, names)
    conn = ctx.session.connection()
    builder = search_index.Builder(conn, actor.tenant_id)
    while made < n:
        rows = []
        for person in (next(generator) for _ in range(min(batch, n - made))):
            company = person.pop("company")
            row = {
                **defaults,
                **base,
                **person,
                "checkboxes": person["checkboxes"] & enabled,
                "company_id": company_ids.get(company),
            }
            row["name_norm"] = name_key(row["name"])
            row["phone_digits"] = phone_digits(row["phone"])
            row["mobile_digits"] = phone_digits(row["mobile"])
            row["search_text"] = records.search_text(row, stored_names.get(company, ""))
            rows.append(row)
        search_index.insert_contacts(conn, actor.tenant_id, rows, builder)
        tally.add_rows(conn, actor.tenant_id, CrmContact, rows)
        made += len(rows)
    builder.finish()
    audit.record(
        ctx,
        tenant_id=actor.tenant_id,
        actor=actor.login,
        action="crm:seeded",
        subject=f"{n} contacts",
        seed=seed,
    )
    return made
