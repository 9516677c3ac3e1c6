"""The complete document every new tenant starts from (Japanese default labels)."""

from __future__ import annotations

from functools import cache

from provisioner.config.document import (
    CHECKBOX_COUNT,
    MEMO_COUNT,
    Checkbox,
    Classifications,
    ConfigDocument,
    InputRules,
    MemoField,
    Picklist,
    PicklistValue,
    Settings,
)

DEFAULT_LABELS: dict[str, str] = {
    "company.name": "会社名",
    "company.kana": "会社名フリガナ",
    "company.representative": "代表者",
    "company.industry": "業種",
    "company.capital": "資本金",
    "company.employees": "従業員数",
    "company.established": "設立",
    "company.postal_code": "郵便番号",
    "company.address": "住所",
    "company.phone": "電話番号",
    "company.fax": "FAX",
    "company.email": "メール",
    "company.url": "URL",
    "company.note": "備考",
    "department.name": "部署名",
    "department.postal_code": "郵便番号",
    "department.address": "住所",
    "department.phone": "電話番号",
    "department.fax": "FAX",
    "department.email": "メール",
    "department.note": "備考",
    "contact.name": "氏名",
    "contact.kana": "フリガナ",
    "contact.title": "役職",
    "contact.email": "メール",
    "contact.phone": "電話番号",
    "contact.mobile": "携帯電話",
    "contact.fax": "FAX",
    "contact.postal_code": "郵便番号",
    "contact.address": "住所",
    "contact.birthday": "生年月日",
    "contact.sex": "性別",
    "contact.note": "備考",
    "activity.date": "対応日",
    "activity.kind": "対応種別",
    "activity.content": "内容",
    "activity.detail": "詳細",
    "activity.response": "対応",
    "activity.store": "店舗",
    "activity.staff": "担当者",
    "activity.memo": "メモ",
    **{f"activity.content_{i}": f"内容{i}" for i in range(1, 11)},
    "purchase.date": "購入日",
    "purchase.product_class": "商品分類",
    "purchase.product_code": "商品コード",
    "purchase.product_name": "商品名",
    "purchase.quantity": "数量",
    "purchase.unit_price": "単価",
    "purchase.amount": "金額",
    "purchase.payment_method": "支払方法",
    "purchase.shipped": "発送済",
    "purchase.paid": "入金済",
    "purchase.media": "媒体",
    "purchase.memo": "メモ",
}


def _picklist(code: str, label: str, values: list[tuple[str, str]]) -> Picklist:
    return Picklist(
        code=code, label=label, values=[PicklistValue(code=c, label=v) for c, v in values]
    )


DEFAULT_PICKLISTS = [
    _picklist(
        "activity_kind",
        "対応種別",
        [
            ("phone", "電話"),
            ("email", "メール"),
            ("visit", "訪問"),
            ("store", "来店"),
            ("other", "その他"),
        ],
    ),
    _picklist(
        "payment_method",
        "支払方法",
        [
            ("cash", "現金"),
            ("bank_transfer", "銀行振込"),
            ("credit_card", "クレジットカード"),
            ("cod", "代金引換"),
        ],
    ),
    _picklist(
        "media",
        "媒体",
        [
            ("phone", "電話"),
            ("fax", "FAX"),
            ("web", "Web"),
            ("store", "店頭"),
        ],
    ),
    _picklist("sex", "性別", [("male", "男性"), ("female", "女性"), ("other", "その他")]),
    _picklist(
        "family_relation",
        "続柄",
        [
            ("spouse", "配偶者"),
            ("child", "子"),
            ("father", "父"),
            ("mother", "母"),
            ("other", "その他"),
        ],
    ),
]


@cache
def default_document() -> ConfigDocument:
    """The document a new tenant starts with. Cached: documents are immutable."""
    return ConfigDocument(
        mode="corporate",
        labels=DEFAULT_LABELS,
        memo_fields=[MemoField(index=i, label=f"メモ{i}") for i in range(1, MEMO_COUNT + 1)],
        checkboxes=[Checkbox(index=i, label=f"チェック{i}") for i in range(1, CHECKBOX_COUNT + 1)],
        picklists=DEFAULT_PICKLISTS,
        classifications=Classifications(),
        custom_databases=[],
        workflows=[],
        blueprints=[],
        roles=[],
        input_rules=InputRules(),
        settings=Settings(),
    )
