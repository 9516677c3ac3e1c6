"""``provisioner demo``: the copy story end to end, narrated, on a throwaway SQLite database.

A call-center outsourcer (the partner) builds its industry template once;
two client tenants each hand it a copy key; the partner sends; each client
reviews the plan -- including what it does to the customer records it already
has -- and approves, remapping values the template retires; one of them
changes its mind and rolls back. Then the partner improves its template and
the other client, which had relabelled some fields its own way, upgrades
three-way and keeps its labels.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from provisioner.cli.render import render_plan
from provisioner.clock import format_instant
from provisioner.config.defaults import default_document
from provisioner.errors import ProvisionerError
from provisioner.services import actors, configs, copykeys, tenants, transfers, workflows
from provisioner.services.context import Provisioner
from provisioner.services.crm import records

#: さくら通販's existing customers: (name, kana, phone, checkboxes, activity kinds)
SAKURA_CUSTOMERS = [
    ("佐藤 美咲", "サトウ ミサキ", "03-3541-2201", [1], ["phone", "phone"]),
    ("高橋 健一", "タカハシ ケンイチ", "06-6312-0457", [1, 2], ["store"]),
    ("伊藤 真由美", "イトウ マユミ", "090-4411-7823", [], ["phone", "email"]),
]
#: how さくら通販's admin maps the activity kinds the template retires
SAKURA_REMAPS = {
    "activity_kind.phone": "phone_inquiry",
    "activity_kind.email": "request",
    "activity_kind.store": "store_visit",
}

CHECKBOXES = [
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
    "メルマガ購読",
    "要フォロー",
]
MEMOS = ["担当センター", "契約プラン", "初回受付日", "紹介元", "好きな連絡時間帯"]


def template() -> dict[str, Any]:
    """The partner's call-center template, as configuration sections."""
    data = default_document().to_data()
    checkboxes = data["checkboxes"]
    for i, label in enumerate(CHECKBOXES):
        checkboxes[i] = {"index": i + 1, "label": label, "enabled": True}
    for box in checkboxes[len(CHECKBOXES) :]:
        box["enabled"] = False
    memos = data["memo_fields"]
    for i, label in enumerate(MEMOS):
        memos[i] = {"index": i + 1, "label": label, "type": "text", "picklist": None}
    memos[1] = {"index": 2, "label": "契約プラン", "type": "picklist", "picklist": "plan"}
    picklists = [p for p in data["picklists"] if p["code"] != "activity_kind"]
    picklists += [
        {
            "code": "activity_kind",
            "label": "対応種別",
            "values": [
                {"code": "request", "label": "ご要望", "active": True},
                {"code": "complaint", "label": "クレーム", "active": True},
                {"code": "store_visit", "label": "来店", "active": True},
                {"code": "phone_inquiry", "label": "電話問合せ", "active": True},
            ],
        },
        {
            "code": "plan",
            "label": "契約プラン",
            "values": [
                {"code": "basic", "label": "ベーシック", "active": True},
                {"code": "premium", "label": "プレミアム", "active": True},
            ],
        },
    ]
    return {
        "checkboxes": checkboxes,
        "memo_fields": memos,
        "picklists": picklists,
        "labels": {
            **data["labels"],
            "activity.content_1": "お問合せ内容",
            "activity.content_2": "対応結果",
        },
        "classifications": {
            "customer": [
                {"code": "supplier", "label": "取引先", "parent": None},
                {"code": "reseller", "label": "販売先", "parent": None},
            ],
            "product": [],
        },
        "workflows": [
            {
                "code": "complaint_follow_up",
                "label": "クレーム受付時は要フォロー",
                "active": True,
                "object": "activity",
                "trigger": {"event": "created", "field": None},
                "conditions": {
                    "match": "all",
                    "rules": [{"field": "activity.kind", "op": "eq", "value": "complaint"}],
                },
                "actions": [
                    {"type": "set_checkbox", "index": 12, "checked": True},
                    {
                        "type": "notify",
                        "role": "admin",
                        "message": "クレームが登録されました。24時間以内に折り返してください。",
                    },
                ],
            },
            {
                "code": "vip_on_premium",
                "label": "プレミアム契約はVIP",
                "active": True,
                "object": "contact",
                "trigger": {"event": "field_changed", "field": "contact.memo_2"},
                "conditions": {
                    "match": "all",
                    "rules": [{"field": "contact.memo_2", "op": "eq", "value": "premium"}],
                },
                "actions": [{"type": "set_checkbox", "index": 5, "checked": True}],
            },
        ],
        "input_rules": {
            "company_suffix": "kabushiki_kaisha",
            "phone_format": "hyphen",
            "normalize_width": True,
            "duplicate_check_company": True,
            "duplicate_check_contact": True,
        },
    }


#: さくら通販's own changes after taking the template: (checkbox index, label), (memo, label)
SAKURA_OWN_CHECKBOX = (9, "DM送付停止")
SAKURA_OWN_MEMO = (3, "初回購入日")


def improved_template() -> dict[str, Any]:
    """The partner's next template version: a new checkbox, a relabel, a new plan value."""
    data = template()
    data["checkboxes"][12] = {"index": 13, "label": "解約予備軍", "enabled": True}
    data["checkboxes"][10] = {"index": 11, "label": "メルマガ希望", "enabled": True}
    data["memo_fields"][5] = {"index": 6, "label": "解約理由", "type": "text", "picklist": None}
    plan = next(p for p in data["picklists"] if p["code"] == "plan")
    plan["values"].append({"code": "gold", "label": "ゴールド", "active": True})
    return data


def _say(text: str = "", *, step: str | None = None) -> None:
    if step:
        click.secho(f"\n== {step}", bold=True)
    if text:
        click.echo(text)


def _indent(text: str, prefix: str = "   ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def run_demo(*, keep: bool = False) -> None:
    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="provisioner-demo-"))
    os.environ.pop("PROVISIONER_MASTER_KEY", None)
    os.environ["PROVISIONER_HOME"] = str(home)
    try:
        url = f"sqlite:///{home / 'provisioner.db'}"
        app = Provisioner.open(url, migrate_to_head=True)
        _story(app, home)
        app.engine.dispose()
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    where = f"kept in {home}" if keep else "removed"
    _say(f"\nDone in {time.perf_counter() - started:.1f} s. The demo database was {where}.")


def _automation(app: Provisioner) -> None:
    """Step 6: the copied rules arrive paused; a dry run; activation; the first firing."""
    _say(
        "The template's two workflows act on real records, so they arrive paused. suzuki "
        "lists them, dry-runs one against さくら通販's customers, and activates both:",
        step="6. Copied automation arrives paused",
    )
    with app.transaction() as ctx:
        suzuki = actors.resolve(ctx, "suzuki", "sakura-tsuhan")
        for wf in workflows.list_workflows(ctx, suzuki):
            _say(f"   {wf['code']:<20} {wf['state']:<7} {wf['label']} ({wf['trigger']})")
        report = workflows.dry_run(ctx, suzuki, "complaint_follow_up").to_dict()
    _say(
        f"   dry-run complaint_follow_up: {report['matched']} of {report['examined']} "
        "activities match (the remapped history holds no complaint yet); nothing written"
    )
    with app.transaction() as ctx:
        for code in ("complaint_follow_up", "vip_on_premium"):
            workflows.set_active(ctx, suzuki, code, True)
    with app.transaction() as ctx:
        customer = records.create(
            ctx,
            suzuki,
            "contact",
            {"name": "渡辺 直樹", "kana": "ワタナベ ナオキ", "phone": "045-201-3344"},
        ).record
        records.create(
            ctx,
            suzuki,
            "activity",
            {
                "contact_id": customer["id"],
                "date": "2026-11-02",
                "kind": "complaint",
                "content": "商品が届かない",
            },
        )
        saved = records.update(ctx, suzuki, "contact", customer["id"], {"memo_2": "premium"}).record
        fired = workflows.execution_log(ctx, suzuki, limit=10)
        inbox = workflows.notifications(ctx, suzuki)
    labels = [CHECKBOXES[i - 1] for i in saved["checkboxes"]]
    _say(
        f"   a complaint is recorded for 渡辺 直樹 and his plan becomes premium: checkboxes "
        f"now {' '.join(labels)} (rules fired: "
        f"{', '.join(sorted({e['workflow'] for e in fired}))})"
    )
    if inbox:
        _say(f"   suzuki's inbox: {inbox[0]['message']}")
    _say("   (provisioner workflow list / dry-run / activate / log; docs/workflows.md)")


def _story(app: Provisioner, home: Path) -> None:
    _say(
        f"A fresh SQLite database in {home}.\n"
        "Cast: ミライコール (a call-center outsourcer and implementation partner) and two of "
        "its clients, さくら通販 and あおば不動産.",
        step="0. Setting the scene",
    )
    with app.transaction() as ctx:
        for slug, name, admin in (
            ("mirai-call", "株式会社ミライコール", "tanaka"),
            ("sakura-tsuhan", "さくら通販株式会社", "suzuki"),
            ("aoba-fudosan", "あおば不動産株式会社", "takahashi"),
        ):
            tenants.create(ctx, slug, name=name, plan="professional")
            tenants.add_user(ctx, admin, tenant_slug=slug, role="admin")
            _say(
                f"   tenant {slug:<14} {name}  (admin: {admin}; an Ed25519 signing key "
                "is made with the tenant)"
            )
        tenants.add_user(ctx, "yamada", tenant_slug="sakura-tsuhan", role="general")
    with app.transaction() as ctx:
        suzuki = actors.resolve(ctx, "suzuki", "sakura-tsuhan")
        for name, kana, phone, boxes, kinds in SAKURA_CUSTOMERS:
            contact = records.create(
                ctx,
                suzuki,
                "contact",
                {"name": name, "kana": kana, "phone": phone, "checkboxes": boxes},
            ).record
            for n, kind in enumerate(kinds):
                records.create(
                    ctx,
                    suzuki,
                    "activity",
                    {
                        "contact_id": contact["id"],
                        "date": f"2026-10-{n + 1:02d}",
                        "kind": kind,
                        "content": "お問合せ対応",
                    },
                )
    _say(
        f"   さくら通販 already has {len(SAKURA_CUSTOMERS)} customers and their contact "
        "history, recorded with the default activity kinds (電話, メール, 来店)."
    )

    _say(
        "ミライコール's admin (tanaka) turns its tenant into the call-center template: "
        f"checkboxes {'/'.join(CHECKBOXES[:6])}..., memo labels {'/'.join(MEMOS[:3])}..., "
        "activity kinds ご要望/クレーム/来店/電話問合せ, customer classes 取引先/販売先, "
        "two workflows, and the 株式会社 input rule.",
        step="1. The partner builds its template",
    )
    with app.transaction() as ctx:
        actor = actors.resolve(ctx, "tanaka", "mirai-call")
        version = configs.set_sections(ctx, actor, actors.get_tenant(ctx, "mirai-call"), template())
    _say(f"   mirai-call configuration is now version {version}")

    _say(
        "Each client's admin generates a copy key (valid 24 hours, one use) and gives it "
        "to ミライコール out of band.",
        step="2. The clients generate copy keys",
    )
    keys: dict[str, str] = {}
    with app.transaction() as ctx:
        for slug, admin in (("sakura-tsuhan", "suzuki"), ("aoba-fudosan", "takahashi")):
            generated = copykeys.generate(
                ctx, actors.resolve(ctx, admin, slug), actors.get_tenant(ctx, slug)
            )
            keys[slug] = generated.text
            _say(
                f"   {slug:<14} {generated.text}  (expires {format_instant(generated.expires_at)})"
            )
    with app.transaction() as ctx:
        try:
            copykeys.generate(
                ctx,
                actors.resolve(ctx, "yamada", "sakura-tsuhan"),
                actors.get_tenant(ctx, "sakura-tsuhan"),
            )
        except Exception as exc:
            _say(f"   (yamada, a general user, tries too and is refused: {exc})")

    _say(
        "tanaka sends the template to each key. provisioner signs it (DSSE + Ed25519 over "
        "RFC 8785 JSON); the target verifies the signature, the key, the schema and the "
        "references, and files a pending transfer with a plan.",
        step="3. The partner sends",
    )
    sent: dict[str, int] = {}
    with app.transaction() as ctx:
        partner = actors.resolve(ctx, "tanaka", "mirai-call")
        for slug, text in keys.items():
            transfer = transfers.send(ctx, partner, text)
            sent[slug] = transfer.id
            _say(
                f"   -> {slug}: transfer {transfer.id} pending, bundle digest "
                f"{transfer.payload_digest[:23]}..."
            )
    with app.transaction() as ctx:
        try:
            transfers.send(ctx, actors.resolve(ctx, "tanaka", "mirai-call"), keys["sakura-tsuhan"])
        except Exception as exc:
            _say(f"   (sending again with the same key is refused: {exc})")

    _say(
        "さくら通販's admin (suzuki) opens the inbox and reads the plan before anything changes:",
        step="4. The clients review the plan",
    )
    with app.transaction() as ctx:
        transfer, _ = transfers.get(ctx, "suzuki", sent["sakura-tsuhan"])
        plan_text = render_plan(
            {
                "id": transfer.id,
                "status": transfer.status,
                "source_tenant": transfer.source_tenant,
                "source_version": transfer.source_version,
                "received_at": format_instant(transfer.received_at),
                "received_by": transfer.received_by,
                "signer_key_id": transfer.signer_key_id,
                "bundle_digest": transfer.payload_digest,
                "plan": transfer.plan,
            },
            per_section=4,
        )
    _say(_indent(plan_text))
    _say("   (the full plan: provisioner inbox show ID --as suzuki; --json for tools)")

    _say(
        "Both admins approve. Each approval re-checks that the client's configuration is "
        "still the one the plan was made against and counts the affected records again, "
        "then writes the new version, any remaps, the transfer state and the audit event "
        "in one transaction. A plain approval would leave さくら通販's contact history "
        "pointing at retired activity kinds, so it is refused:",
        step="5. Approve",
    )
    with app.transaction() as ctx:
        try:
            transfers.approve(
                ctx, actors.resolve(ctx, "suzuki", "sakura-tsuhan"), sent["sakura-tsuhan"]
            )
        except ProvisionerError as exc:
            _say(_indent(exc.message))
    _say(
        "suzuki approves again, mapping each retired kind to its new counterpart "
        "(inbox approve --remap activity_kind.phone=phone_inquiry ...):"
    )
    for slug, admin, remaps in (
        ("sakura-tsuhan", "suzuki", SAKURA_REMAPS),
        ("aoba-fudosan", "takahashi", {}),
    ):
        with app.transaction() as ctx:
            decision = transfers.approve(
                ctx, actors.resolve(ctx, admin, slug), sent[slug], remaps=remaps
            )
            doc = configs.current(ctx, actors.get_tenant(ctx, slug)).data
        labels = [c["label"] for c in doc["checkboxes"][:6]]
        _say(f"   {slug:<14} now at version {decision.version}; checkboxes 1-6: {' '.join(labels)}")
        for key, count in (decision.remapped or {}).items():
            _say(
                f"   {'':<14} {key} -> {remaps[key]}: {count} "
                f"{'activity' if count == 1 else 'activities'} rewritten"
            )

    _automation(app)

    _say(
        "あおば不動産 decides the call-center template does not suit a real-estate office "
        "after all, and rolls the transfer back. The old configuration returns as a new "
        "version; history keeps every step.",
        step="7. One client rolls back",
    )
    with app.transaction() as ctx:
        version = transfers.rollback(
            ctx, actors.resolve(ctx, "takahashi", "aoba-fudosan"), sent["aoba-fudosan"]
        )
        tenant = actors.get_tenant(ctx, "aoba-fudosan")
        history = configs.history(ctx, tenant)
        doc = configs.current(ctx, tenant).data
    _say(
        f"   aoba-fudosan is at version {version}; checkbox 1 is "
        f"{doc['checkboxes'][0]['label']!r} again"
    )
    for row in history:
        _say(f"   version {row.version}: {row.origin:<12} by {row.created_by}")

    _template_upgrade(app)

    _say(
        "Every step above is in the audit log (who, when, bundle digest, signer key, source "
        "tenant).\nTry it yourself:\n"
        "   provisioner init\n"
        "   provisioner tenant create acme --name 'ACME株式会社'\n"
        "   provisioner user add sato --tenant acme --role admin\n"
        "   provisioner key generate -t acme --as sato\n"
        "   provisioner send -t SOURCE --as ADMIN --key KEY\n"
        "   provisioner inbox show 1 --as sato && provisioner inbox approve 1 --as sato",
        step="9. What next",
    )


def _template_upgrade(app: Provisioner) -> None:
    """The partner improves its template; さくら通販 upgrades and keeps its own labels."""
    box, box_label = SAKURA_OWN_CHECKBOX
    memo, memo_label = SAKURA_OWN_MEMO
    _say(
        f"さくら通販 has made the template its own: suzuki relabels checkbox {box} as "
        f"{box_label!r} and memo {memo} as {memo_label!r}. ミライコール meanwhile improves "
        "its template (checkbox 13 解約予備軍, checkbox 11 メルマガ希望, memo 6 解約理由, a "
        "ゴールド plan) and sends it again.",
        step="8. The partner improves its template",
    )
    with app.transaction() as ctx:
        suzuki = actors.resolve(ctx, "suzuki", "sakura-tsuhan")
        sakura = actors.get_tenant(ctx, "sakura-tsuhan")
        doc = configs.current(ctx, sakura).data
        doc["checkboxes"][box - 1] = {**doc["checkboxes"][box - 1], "label": box_label}
        doc["memo_fields"][memo - 1] = {**doc["memo_fields"][memo - 1], "label": memo_label}
        configs.set_sections(
            ctx,
            suzuki,
            sakura,
            {"checkboxes": doc["checkboxes"], "memo_fields": doc["memo_fields"]},
        )
        key = copykeys.generate(ctx, suzuki, sakura).text
    with app.transaction() as ctx:
        tanaka = actors.resolve(ctx, "tanaka", "mirai-call")
        configs.set_sections(ctx, tanaka, actors.get_tenant(ctx, "mirai-call"), improved_template())
        transfer_id = transfers.send(ctx, tanaka, key).id
    with app.transaction() as ctx:
        transfer, _ = transfers.get(ctx, "suzuki", transfer_id)
        plan = transfers.preview(ctx, transfer)
        upgrade = plan["upgrade"]
    _say(
        f"   transfer {transfer_id}: a three-way plan against the version さくら通販 last "
        f"took from ミライコール (its version {upgrade['source_version']}):"
    )
    _say(f"   taken (changed only by the partner): {', '.join(upgrade['taken'])}")
    _say(f"   kept  (changed only here):           {', '.join(upgrade['kept'])}")
    _say(f"   conflicts: {len(upgrade['conflicts'])}")
    with app.transaction() as ctx:
        decision = transfers.approve(
            ctx, actors.resolve(ctx, "suzuki", "sakura-tsuhan"), transfer_id
        )  # mode upgrade: the default with a base
        doc = configs.current(ctx, actors.get_tenant(ctx, "sakura-tsuhan")).data
    _say(
        f"   approved (inbox approve {transfer_id}): version {decision.version}; checkbox "
        f"{box} {doc['checkboxes'][box - 1]['label']!r}, memo {memo} "
        f"{doc['memo_fields'][memo - 1]['label']!r} (kept), checkbox 13 "
        f"{doc['checkboxes'][12]['label']!r}, memo 6 {doc['memo_fields'][5]['label']!r} "
        "(taken)"
    )
    _say(
        "   (provisioner config lineage -t sakura-tsuhan lists where the configuration came "
        "from and what was changed locally since)"
    )
