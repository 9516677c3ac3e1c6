"""Console text in Japanese and English.

The language is the ``provisioner_lang`` cookie when set (the header's 日本語 /
English links set it), else the browser's ``Accept-Language`` (Japanese unless
English is preferred). Service messages (errors, plan lines) are shown as the
services word them.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

LANGS = ("ja", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    # key: (日本語, English)
    "app": ("設定コピー管理コンソール", "Provisioner console"),
    "login": ("ログイン", "Log in"),
    "login_id": ("ログインID", "Login ID"),
    "password": ("パスワード", "Password"),
    "logout": ("ログアウト", "Log out"),
    "choose_tenant": ("テナントを選択", "Choose a tenant"),
    "choose_tenant_help": ("利用するテナントを選んでください（最初のテナントが選択済み）。",
                           "Choose the tenant to work in (the first one is preselected)."),
    "open": ("開く", "Open"),
    "switch_tenant": ("テナント切替", "Switch tenant"),
    "home": ("ホーム", "Home"),
    "keys": ("コピーキー", "Copy keys"),
    "send": ("設定を送信", "Send"),
    "inbox": ("受信箱", "Inbox"),
    "config": ("設定", "Configuration"),
    "history": ("履歴", "History"),
    "customers": ("顧客", "Customers"),
    "pop": ("着信ポップアップ", "Screen pop"),
    "tenant": ("テナント", "Tenant"),
    "role": ("権限", "Role"),
    "plan": ("プラン", "Plan"),
    "config_version": ("設定バージョン", "Configuration version"),
    "pending": ("承認待ち", "Pending"),
    "pending_transfers": ("承認待ちの受信設定", "Incoming configurations waiting"),
    "generate_key": ("コピーキーを発行", "Generate a copy key"),
    "key_help": ("コピーキーは送信元テナントの管理者に渡します。24時間・1回限り有効です。",
                 "Give the copy key to the source tenant's admin. It works once, for 24 hours."),
    "key_shown_once": ("このキーは今回だけ表示されます。今すぐコピーしてください。",
                       "This key is shown only this once. Copy it now."),
    "expires_at": ("有効期限", "Expires"),
    "state": ("状態", "State"),
    "created_by": ("作成者", "Created by"),
    "revoke": ("失効させる", "Revoke"),
    "no_keys": ("コピーキーはありません。", "No copy keys."),
    "copy_key": ("コピーキー", "Copy key"),
    "sections": ("セクション", "Sections"),
    "all_sections": ("すべて（空欄のとき）", "all (when none is ticked)"),
    "send_help": ("相手先テナントの管理者から受け取ったコピーキーで、"
                  "このテナントの設定を送信します。",
                  "Send this tenant's configuration with the copy key the target's admin "
                  "gave you."),
    "sent": ("送信しました。相手先の受信箱で承認待ちです。",
             "Sent. It is waiting in the target's inbox for approval."),
    "from": ("送信元", "From"),
    "received_at": ("受信日時", "Received"),
    "changes": ("変更", "Changes"),
    "status": ("状態", "Status"),
    "inbox_empty": ("受信箱は空です。", "The inbox is empty."),
    "transfer": ("受信設定", "Transfer"),
    "plan_title": ("適用内容（計画）", "Plan"),
    "no_changes": ("変更はありません。", "No changes."),
    "impact": ("データへの影響", "Impact on records"),
    "no_impact": ("既存データへの影響はありません。", "No record is affected."),
    "blocking": ("要対応", "blocking"),
    "remap": ("置換先の値", "Replace with"),
    "force": ("置換せずに強制適用（レコードは古い値のまま）",
              "Force (records keep the value the configuration no longer offers)"),
    "mode": ("方式", "Mode"),
    "mode_replace": ("置換（送信元の設定にする）", "Replace (take the source's configuration)"),
    "mode_merge": ("マージ（追加・変更のみ、削除しない）",
                   "Merge (add and change only, never delete)"),
    "preview": ("計画を再表示", "Preview"),
    "approve": ("承認して適用", "Approve and apply"),
    "reject": ("却下", "Reject"),
    "reason": ("理由", "Reason"),
    "applied": ("適用しました。", "Applied."),
    "rejected": ("却下しました。設定は変わっていません。",
                 "Rejected. The configuration is unchanged."),
    "labels": ("項目名", "Field labels"),
    "checkboxes": ("チェック項目（48）", "Checkboxes (48)"),
    "memo_fields": ("メモ項目", "Memo fields"),
    "picklists": ("選択リスト", "Picklists"),
    "classifications": ("分類", "Classifications"),
    "customer_classes": ("顧客分類", "Customer classifications"),
    "product_classes": ("商品分類", "Product classifications"),
    "save": ("保存", "Save"),
    "saved": ("保存しました。", "Saved."),
    "unchanged": ("変更はありませんでした。", "Nothing changed."),
    "enabled": ("有効", "Enabled"),
    "active": ("有効", "Active"),
    "label": ("表示名", "Label"),
    "code": ("コード", "Code"),
    "type": ("種類", "Type"),
    "parent": ("親", "Parent"),
    "values": ("値", "Values"),
    "new_picklist": ("新しい選択リスト", "New picklist"),
    "blank_rows": ("空欄の行は無視されます。コードを消すと削除されます。",
                   "Blank rows are ignored; clear a code to remove its row."),
    "version": ("バージョン", "Version"),
    "created_at": ("日時", "When"),
    "origin": ("由来", "Origin"),
    "current": ("現在", "current"),
    "diff": ("差分", "Diff"),
    "compare": ("比較", "Compare"),
    "rollback": ("このバージョンに戻す", "Restore this version"),
    "rolled_back": ("元に戻しました。", "Restored."),
    "search": ("検索", "Search"),
    "search_help": ("氏名・フリガナ・会社名・電話番号・住所・メール・メモの部分一致",
                    "Partial match over name, kana, company, phone, address, e-mail, memos"),
    "found": ("件", "found"),
    "customer": ("顧客", "Customer"),
    "company": ("会社", "Company"),
    "checked_boxes": ("チェック項目", "Checked"),
    "activities": ("対応履歴", "Activities"),
    "purchases": ("購入履歴", "Purchases"),
    "phone": ("電話番号", "Phone number"),
    "pop_help": ("着信番号を入力すると顧客カードを表示します（形式は問いません）。",
                 "Type the caller's number (any format) to show the customer card."),
    "other_matches": ("同じ番号の他の顧客", "Other customers with this number"),
    "error": ("エラー", "Error"),
    "request_id": ("問い合わせ番号", "Request ID"),
    "back": ("戻る", "Back"),
    "none": ("なし", "none"),
    "language": ("English", "日本語"),
}


def language(request: Request) -> str:
    chosen = request.cookies.get("provisioner_lang")
    if chosen in LANGS:
        return chosen
    accept = request.headers.get("accept-language", "").lower()
    return "en" if accept.startswith("en") else "ja"


def translator(lang: str) -> Callable[[str], str]:
    index = LANGS.index(lang) if lang in LANGS else 0

    def t(key: str) -> str:
        pair = MESSAGES.get(key)
        return pair[index] if pair else key

    return t
