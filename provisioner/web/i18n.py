"""Console text in Japanese and English.

The language is the ``provisioner_lang`` cookie when set (the header's 日本語 /
English links set it), else the browser's ``Accept-Language`` (Japanese unless
English is preferred). Every string a page shows is a key of :data:`MESSAGES`, the
one catalogue, in both languages (``tests/web/test_i18n.py`` fails on a key missing in
either). Values from the data (statuses, roles, sections, a plan's data impact) are
keys with a prefix (``status.applied``); server error messages are translated through
:data:`MESSAGE_PATTERNS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup
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
    "choose_tenant_help": (
        "利用するテナントを選んでください（最初のテナントが選択済み）。",
        "Choose the tenant to work in (the first one is preselected).",
    ),
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
    "key_help": (
        "コピーキーは送信元テナントの管理者に渡します。24時間・1回限り有効です。",
        "Give the copy key to the source tenant's admin. It works once, for 24 hours.",
    ),
    "key_shown_once": (
        "このキーは今回だけ表示されます。今すぐコピーしてください。",
        "This key is shown only this once. Copy it now.",
    ),
    "expires_at": ("有効期限", "Expires"),
    "state": ("状態", "State"),
    "created_by": ("作成者", "Created by"),
    "revoke": ("失効させる", "Revoke"),
    "no_keys": ("コピーキーはありません。", "No copy keys."),
    "copy_key": ("コピーキー", "Copy key"),
    "sections": ("セクション", "Sections"),
    "all_sections": ("すべて（空欄のとき）", "all (when none is ticked)"),
    "send_help": (
        "相手先テナントの管理者から受け取ったコピーキーで、このテナントの設定を送信します。",
        "Send this tenant's configuration with the copy key the target's admin gave you.",
    ),
    "sent": (
        "送信しました。相手先の受信箱で承認待ちです。",
        "Sent. It is waiting in the target's inbox for approval.",
    ),
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
    "impact_workflows": (
        "受け取るワークフローが今のデータで該当する件数",
        "Incoming workflows: records their conditions match now",
    ),
    "impact.workflow_matches": (
        "ワークフロー {workflow}（{label}、{change}、{state}）: 条件に該当する {object} は現在 "
        "{examined} 件中 {count} 件",
        "workflow {workflow} ({label}, {change}, {state}): its conditions match {count} of "
        "{examined} {object} records now",
    ),
    "wf_change.new": ("新規", "new"),
    "wf_change.changed": ("変更", "changed"),
    "remap": ("置換先の値", "Replace with"),
    "force": (
        "置換せずに強制適用（レコードは古い値のまま）",
        "Force (records keep the value the configuration no longer offers)",
    ),
    "mode": ("方式", "Mode"),
    "mode_replace": ("置換（送信元の設定にする）", "Replace (take the source's configuration)"),
    "mode_merge": (
        "マージ（追加・変更のみ、削除しない）",
        "Merge (add and change only, never delete)",
    ),
    "mode_upgrade": (
        "アップグレード（3方向: 自社の変更を残す）",
        "Upgrade (three-way: keep this tenant's own changes)",
    ),
    "upgrade_title": ("アップグレード", "Upgrade"),
    "upgrade_taken": ("取り込む", "Taken"),
    "upgrade_kept": ("自社の変更を維持", "Kept"),
    "upgrade_conflicts": ("競合", "Conflicts"),
    "upgrade_address": ("項目", "Address"),
    "upgrade_base": ("前回受信時", "Base"),
    "upgrade_ours": ("自社", "Ours"),
    "upgrade_theirs": ("送信元", "Theirs"),
    "upgrade_choice": ("採用", "Choice"),
    "preview": ("計画を再表示", "Preview"),
    "approve": ("承認して適用", "Approve and apply"),
    "reject": ("却下", "Reject"),
    "reason": ("理由", "Reason"),
    "applied": ("適用しました。", "Applied."),
    "rejected": (
        "却下しました。設定は変わっていません。",
        "Rejected. The configuration is unchanged.",
    ),
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
    "blank_rows": (
        "空欄の行は無視されます。コードを消すと削除されます。",
        "Blank rows are ignored; clear a code to remove its row.",
    ),
    "version": ("バージョン", "Version"),
    "created_at": ("日時", "When"),
    "origin": ("由来", "Origin"),
    "current": ("現在", "current"),
    "diff": ("差分", "Diff"),
    "compare": ("比較", "Compare"),
    "rollback": ("このバージョンに戻す", "Restore this version"),
    "rolled_back": ("元に戻しました。", "Restored."),
    "search": ("検索", "Search"),
    "search_help": (
        "氏名・フリガナ・会社名・電話番号・住所・メール・メモの部分一致",
        "Partial match over name, kana, company, phone, address, e-mail, memos",
    ),
    "found": ("件", "found"),
    "customer": ("顧客", "Customer"),
    "company": ("会社", "Company"),
    "checked_boxes": ("チェック項目", "Checked"),
    "activities": ("対応履歴", "Activities"),
    "purchases": ("購入履歴", "Purchases"),
    "phone": ("電話番号", "Phone number"),
    "pop_help": (
        "着信番号を入力すると顧客カードを表示します（形式は問いません）。",
        "Type the caller's number (any format) to show the customer card.",
    ),
    "other_matches": ("同じ番号の他の顧客", "Other customers with this number"),
    "error": ("エラー", "Error"),
    "request_id": ("問い合わせ番号", "Request ID"),
    "back": ("戻る", "Back"),
    "none": ("なし", "none"),
    "language": ("English", "日本語"),
    "language_name": ("日本語", "English"),
    "switch_language": ("表示言語を英語に切り替え", "Show this page in Japanese"),
    # layout and accessibility
    "skip": ("本文へ移動", "Skip to content"),
    "main_menu": ("メインメニュー", "Main menu"),
    "config_sections": ("設定のセクション", "Configuration sections"),
    "actions": ("操作", "Actions"),
    "number": ("番号", "No."),
    "selector": ("識別子", "Selector"),
    "signer": ("署名鍵", "Signing key"),
    "key": ("項目", "Item"),
    "op": ("変更の種類", "Kind of change"),
    "diff_from": ("比較元バージョン", "From version"),
    "diff_to": ("比較先バージョン", "To version"),
    "detail": ("詳細（英語）", "Detail"),
    "read_only_notice": (
        "閲覧のみです。変更は管理者が行います。",
        "You can look but not change: changes are made by an admin.",
    ),
    "result": ("結果", "Result"),
    "logged_in_as": ("ログイン中", "Logged in as"),
    "next_page": ("次へ", "Next"),
    "customer_page": ("顧客ページ", "Customer page"),
    "remap_for": ("置換先", "Replace with"),
    "picklist_values": ("値", "values"),
    "value_n": ("値", "Value"),
    "new_value": ("新しい値", "New value"),
    "new_node": ("新しい分類", "New classification"),
    "memo_n": ("メモ項目", "Memo field"),
    "checkbox_n": ("チェック項目", "Checkbox"),
    # approve / reject with confirmation, rollback
    "confirm_approve": ("承認の確認", "Confirm the approval"),
    "confirm_approve_help": (
        "承認すると次の変更がこのテナントの設定に適用されます。",
        "Approving applies these changes to this tenant's configuration.",
    ),
    "confirm_reject": ("却下の確認", "Confirm the rejection"),
    "confirm_reject_help": (
        "却下するとこの受信設定は適用されず、設定は変わりません。",
        "Rejecting discards this transfer; the configuration stays as it is.",
    ),
    "confirm_and_approve": ("確認して適用", "Confirm and apply"),
    "confirm_and_reject": ("確認して却下", "Confirm and reject"),
    "cancel": ("キャンセル", "Cancel"),
    "added": ("追加", "added"),
    "changed_n": ("変更", "changed"),
    "removed": ("削除", "removed"),
    "total": ("合計", "Total"),
    "records_touched": (
        "影響を受けるレコード（影響ごとの延べ件数）",
        "Records touched (counted per impact line)",
    ),
    "records_remapped": ("値を置換するレコード", "Records whose value is replaced"),
    "records_n": ("件", "records"),
    "forced": ("強制適用", "Forced"),
    "yes": ("はい", "yes"),
    "no": ("いいえ", "no"),
    "rollback_transfer": ("この適用を元に戻す", "Roll back this transfer"),
    "rollback_help": (
        "適用前のバージョンを新しいバージョンとして戻します。",
        "The version before it becomes current again, as a new version.",
    ),
    "transfer_rolled_back": ("適用を元に戻しました。", "The transfer was rolled back."),
    # statuses, states, roles, origins, kinds of change (shown from data)
    "status.pending": ("承認待ち", "pending"),
    "status.applied": ("適用済み", "applied"),
    "status.rejected": ("却下", "rejected"),
    "status.rolled_back": ("取り消し済み", "rolled back"),
    "key_state.active": ("有効", "active"),
    "key_state.used": ("使用済み", "used"),
    "key_state.revoked": ("失効", "revoked"),
    "key_state.locked": ("ロック（失敗回数超過）", "locked (too many failures)"),
    "key_state.expired": ("期限切れ", "expired"),
    "role.admin": ("管理者", "admin"),
    "role.general": ("一般", "general"),
    "role.read_only": ("閲覧のみ", "read only"),
    "role.general_no_export": ("一般（エクスポート不可）", "general, no export"),
    "role.general_no_print": ("一般（印刷不可）", "general, no printing"),
    "origin.initial": ("初期設定", "initial"),
    "origin.set": ("編集", "edit"),
    "origin.transfer": ("受信設定 #{n}", "transfer #{n}"),
    "origin.rollback": ("v{n} に戻す", "restore of v{n}"),
    "op.added": ("追加", "added"),
    "op.changed": ("変更", "changed"),
    "op.removed": ("削除", "removed"),
    "object.company": ("会社", "Company"),
    "object.department": ("部署", "Department"),
    "object.contact": ("顧客", "Contact"),
    "object.activity": ("対応履歴", "Activity"),
    "object.purchase": ("購入履歴", "Purchase"),
    "memo_type.text": ("テキスト", "text"),
    "memo_type.picklist": ("選択リスト", "picklist"),
    "section.labels": ("項目名", "field labels"),
    "section.memo_fields": ("メモ項目", "memo fields"),
    "section.checkboxes": ("チェック項目", "checkboxes"),
    "section.picklists": ("選択リスト", "picklists"),
    "section.classifications": ("分類", "classifications"),
    "section.classifications.customer": ("顧客分類", "customer classifications"),
    "section.classifications.product": ("商品分類", "product classifications"),
    "section.custom_databases": ("カスタムデータベース", "custom databases"),
    "section.workflows": ("ワークフロー", "workflows"),
    "section.blueprints": ("ブループリント", "blueprints"),
    "section.roles": ("ロール", "roles"),
    "section.input_rules": ("入力規則", "input rules"),
    "section.settings": ("基本設定", "settings"),
    "section.mode": ("運用モード", "mode"),
    # data impact of a plan (crm.impact item kinds)
    "impact.picklist_value_removed": (
        "{field}: 選択リスト「{picklist}」の値「{value}」が削除されますが、{count} 件のレコードが"
        "この値を使っています（置換先を選んでください）",
        "{field}: value '{value}' of picklist '{picklist}' is removed but {count} record(s) "
        "hold it (choose a replacement)",
    ),
    "impact.memo_retyped_invalid": (
        "{field} は選択リスト「{picklist}」になりますが、{count} 件のレコードにその選択肢にない"
        "値があります",
        "{field} becomes picklist '{picklist}': {count} record(s) hold values it does not offer",
    ),
    "impact.memo_retyped": (
        "{field} の種類が {from} から {to} に変わります（データのあるレコード {count} 件）",
        "{field} changes type {from} -> {to} ({count} with data)",
    ),
    "impact.checkbox_disabled": (
        "チェック項目 {index}（{label}）が無効になりますが、{count} 件の"
        "レコードでチェックされています",
        "checkbox {index} ({label}) is disabled while {count} record(s) have it set",
    ),
    "impact.checkbox_relabelled": (
        "チェック項目 {index} の名前が「{from}」から「{to}」に"
        "変わります（チェック済み {count} 件）",
        "checkbox {index} is relabelled '{from}' -> '{to}' while {count} record(s) have it set",
    ),
    "impact.classification_removed": (
        "分類「{code}」（{tree}）が削除されますが、{count} 件に割り当てられています",
        "{tree} classification '{code}' is removed but assigned to {count} record(s)",
    ),
    "impact.custom_field_removed": (
        "カスタムデータベース「{database}」の項目「{field}」が"
        "削除されますが、{count} 件にデータがあります",
        "custom database '{database}': field '{field}' is removed but {count} record(s) hold data",
    ),
    # errors: a title per error code (the message follows, translated when known)
    "error.error": ("エラーが発生しました", "Something went wrong"),
    "error.not_found": ("見つかりません", "Not found"),
    "error.unresolved_conflicts": ("未解決の競合があります", "Unresolved conflicts"),
    "error.database_unavailable": ("データベースに接続できません", "The database is unavailable"),
    "error.database_busy": ("データベースが混み合っています", "The database is busy"),
    "error.database_locked": ("データベースが使用中です", "The database is locked"),
    "error.storage_full": ("ディスクの空きがありません", "The storage is full"),
    "error.already_exists": ("すでに存在します", "Already exists"),
    "error.permission_denied": ("この操作は許可されていません", "Not allowed"),
    "error.unauthenticated": ("ログインしていません", "Not logged in"),
    "error.validation_failed": ("入力内容に誤りがあります", "The input is not valid"),
    "error.bundle_rejected": ("設定ファイルを受け付けられません", "The bundle was refused"),
    "error.key_rejected": ("コピーキーを受け付けられません", "The copy key was refused"),
    "error.rate_limited": (
        "失敗が続いたため一時的に制限しています",
        "Too many failures: wait a while",
    ),
    "error.plan_conflict": ("他の変更と競合しました", "It conflicts with another change"),
    "error.data_in_use": (
        "既存のデータが使っている値があります",
        "Records still use what would be removed",
    ),
    "error.transfer_refused": ("この受信設定は受け付けられません", "The transfer was refused"),
    "error.quota_exceeded": ("上限を超えています", "Over the limit"),
    "error.configuration_error": (
        "サーバーの設定に問題があります",
        "The server is not configured correctly",
    ),
    "error.replanned": (
        "設定が変わったため計画を作り直しました",
        "The configuration changed meanwhile: the plan was made again",
    ),
    "error.conflict": ("他の変更と競合しました", "It conflicts with another change"),
    "error.bad_request": ("リクエストが正しくありません", "Bad request"),
    "error.method_not_allowed": ("この方法では利用できません", "Method not allowed"),
    "error.not_acceptable": ("受け付けられない形式です", "Not acceptable"),
    "error.too_large": ("大きすぎます", "Too large"),
    "error.unsupported_media_type": ("対応していない形式です", "Unsupported media type"),
    "error.database_error": (
        "データベースで処理できませんでした",
        "The database could not complete the request",
    ),
    "error.internal_error": ("内部エラーが発生しました", "Internal error"),
    # server messages the console shows, by pattern (see MESSAGE_PATTERNS)
    "msg.bad_login": ("ログインIDまたはパスワードが違います。", "Login ID or password is wrong."),
    "msg.form_expired": (
        "フォームの有効期限が切れたか、このサイトから送信されたものではありません。",
        "The form has expired or did not come from this site.",
    ),
    "msg.login_form_expired": (
        "ログインフォームの有効期限が切れました。",
        "The login form has expired.",
    ),
    "msg.reload_and_submit": (
        "ページを再読み込みしてもう一度送信してください。",
        "Reload the page and submit it again.",
    ),
    "msg.submit_again": ("もう一度送信してください。", "Submit it again."),
    "msg.admin_only": (
        "この操作はテナント「{tenant}」の管理者だけが行えます（{login} の権限: {role}）。",
        "Only an admin of '{tenant}' may do this; {login} is {role}.",
    ),
    "msg.no_phone": (
        "電話番号 {number} の顧客はいません。",
        "No customer with phone number {number}.",
    ),
    "msg.register_caller": (
        "新しい顧客として登録してください。",
        "Register the caller as a new contact.",
    ),
    "msg.not_copy_key": (
        "コピーキーではありません（コピーキーは pcpy_ で始まります）。",
        "This is not a copy key: copy keys start with 'pcpy_'.",
    ),
    "msg.key_length": ("コピーキーの長さが違います。", "The copy key has the wrong length."),
    "msg.key_chars": (
        "コピーキーに使えない文字が含まれています。",
        "The copy key contains characters that cannot appear in a key.",
    ),
    "msg.key_checksum": (
        "コピーキーのチェックサムが一致しません（入力ミス）。",
        "The copy key's checksum does not match: it was mistyped.",
    ),
    "msg.key_used": ("このコピーキーはすでに使われています。", "The copy key was already used."),
    "msg.key_unknown": (
        "コピーキーが無効です（期限切れ・失効・不明）。",
        "The copy key is not valid (expired, revoked or unknown).",
    ),
    "msg.paste_key": (
        "相手先の管理者が発行したキーをそのまま貼り付けてください。",
        "Paste the whole key the target tenant's admin generated.",
    ),
    "msg.strand_data": (
        "受信設定 #{id} を承認すると、新しい設定にない値を持つレコードが残ります。",
        "Approving transfer #{id} would strand data the new configuration no longer describes.",
    ),
    "msg.remap_or_force": (
        "削除される値ごとに置換先を選ぶか、強制適用にチェックしてください"
        "（影響はこのページの「データへの影響」にあります）。",
        "Choose a replacement for each removed value, or tick Force (the "
        "impact is listed on this page).",
    ),
    "msg.stray_remap": (
        "置換 {remaps} は、レコードが使っている削除値のどれにも当たりません。",
        "Replacement {remaps} matches no removed value that records hold.",
    ),
    "msg.already": (
        "受信設定 #{id} はすでに {status} です。",
        "Transfer #{id} is already {status}.",
    ),
    "msg.not_applied": (
        "受信設定 #{id} は適用済みではありません。",
        "Transfer #{id} is not applied.",
    ),
    "msg.changed_after": (
        "受信設定 #{id} の適用後に設定が変更されています（現在 v{version}）。",
        "The configuration changed after transfer #{id} was applied (now v{version}).",
    ),
    "msg.session_ended": ("セッションが終了しました。", "The session has ended."),
    "msg.log_in_again": ("もう一度ログインしてください。", "Log in again."),
    "msg.no_transfer": ("受信設定 #{id} はありません。", "No transfer #{id}."),
    "msg.no_version": (
        "設定バージョン {version} はありません。",
        "Configuration version {version} does not exist.",
    ),
    "msg.not_older": (
        "バージョン {version} は現在のバージョン {current} より古くありません。",
        "Version {version} is not older than the current version {current}.",
    ),
    "msg.too_many": (
        "失敗が多すぎます。しばらくしてからもう一度お試しください。",
        "Too many failures; try again later.",
    ),
    "msg.invalid_request": ("リクエストの内容が正しくありません。", "The request is not valid."),
    "msg.not_found_page": ("このページはありません。", "There is no such page."),
    "msg.not_valid": ("入力内容に誤りがあります。", "Some fields are not valid."),
    "msg.fix_fields": (
        "次の項目を直して、もう一度送信してください。",
        "Fix these fields and submit again.",
    ),
    "field.checkboxes": ("チェック項目", "Checkboxes"),
    "field.classifications": ("分類", "Classifications"),
    "field.contact_id": ("顧客", "Customer"),
    "msg.choose_csv": ("取り込む CSV ファイルを選んでください。", "Choose a CSV file to import."),
    "msg.not_yourself": ("自分自身に対しては行えません。", "You cannot do this to yourself."),
    "msg.ask_another_admin": ("ほかの管理者に依頼してください。", "Ask another admin."),
    "msg.last_admin": (
        "{login} はこのテナントの最後の管理者です。",
        "{login} is the tenant's last admin.",
    ),
    "msg.make_admin_first": (
        "先にほかのユーザーを管理者にしてください。",
        "Make another user admin first.",
    ),
    # automation: workflows, dry runs, notifications, blueprint moves
    "workflows": ("ワークフロー", "Workflows"),
    "workflows_help": (
        "レコードの登録・更新・日付で動く自動処理です。"
        "コピーで届いたルールは停止中で届きます。"
        "ドライランで影響を確かめてから有効にしてください。",
        "Rules that run when records are created, updated or reach a date. Rules "
        "that arrive by copy are paused: dry-run them, then activate them.",
    ),
    "trigger": ("実行条件", "Trigger"),
    "last_fired": ("最終実行", "Last fired"),
    "firings": ("実行回数", "Firings"),
    "dry_run": ("ドライラン", "Dry run"),
    "pause": ("停止", "Pause"),
    "activate": ("有効にする", "Activate"),
    "no_workflows": ("ワークフローはありません。", "No workflows."),
    "workflow_log": ("実行ログ", "Execution log"),
    "at": ("日時", "At"),
    "record": ("レコード", "Record"),
    "error_column": ("エラー", "Error"),
    "no_firings": ("まだ実行されていません。", "Nothing has fired yet."),
    "dry_run_result": (
        "{examined} 件中 {matched} 件が条件に一致します。",
        "{matched} of {examined} records match.",
    ),
    "dry_run_changes": ("適用した場合の変更", "What it would change"),
    "first_matches": ("一致した最初のレコード", "First matching records"),
    "nothing_written": ("ドライランでは何も書き込まれていません。", "A dry run writes nothing."),
    "notifications": ("お知らせ", "Notifications"),
    "mark_all_read": ("すべて既読にする", "Mark all as read"),
    "message": ("内容", "Message"),
    "read": ("既読", "read"),
    "unread": ("未読", "unread"),
    "no_notifications": ("お知らせはありません。", "No notifications."),
    "no_transitions": (
        "この状態から進める遷移はありません。",
        "No transition is open to you from this state.",
    ),
    "workflow_activated": ("ワークフローを有効にしました。", "The workflow is active."),
    "workflow_paused": ("ワークフローを停止しました。", "The workflow is paused."),
    "moved": ("状態を進めました。", "Moved."),
    "notifications_read": ("すべて既読にしました。", "All marked as read."),
    "workflow_state.active": ("有効", "active"),
    "workflow_state.paused": ("停止中", "paused"),
    # customers: list and search, forms, history, import/export, bulk, users (issue 12)
    "search_text": ("キーワード", "Keywords"),
    "match": ("条件の組み合わせ", "Combine conditions"),
    "match_all": ("すべて満たす（AND）", "all of them (AND)"),
    "match_any": ("いずれかを満たす（OR）", "any of them (OR)"),
    "clear": ("条件をクリア", "Clear"),
    "field_conditions": ("項目ごとの条件", "Conditions on one field"),
    "checkbox_conditions": ("チェック項目の条件", "Checkbox conditions"),
    "checkbox_conditions_help": (
        "チェック項目ごとに「指定なし」「チェックあり」「チェックなし」を選びます。",
        "For each checkbox choose any, checked or unchecked.",
    ),
    "any": ("指定なし", "any"),
    "checked": ("チェックあり", "checked"),
    "unchecked": ("チェックなし", "unchecked"),
    "date_conditions": ("分類・日付・年齢の条件", "Classification, dates and age"),
    "classification": ("顧客分類", "Classification"),
    "created_range": ("登録日", "Registered"),
    "updated_range": ("更新日", "Updated"),
    "birthday_range": ("生年月日", "Birth date"),
    "age_range": ("年齢", "Age"),
    "from_date": ("から", "from"),
    "to_date": ("まで", "to"),
    "age_from": ("歳から", "from (years)"),
    "age_to": ("歳まで", "to (years)"),
    "activity_conditions": (
        "対応履歴の条件（同じ1件の履歴で満たす）",
        "Activity conditions (met by one and the same activity)",
    ),
    "purchase_conditions": (
        "購入履歴の条件（同じ1件の購入で満たす）",
        "Purchase conditions (met by one and the same purchase)",
    ),
    "sort_by": ("並び順", "Sort by"),
    "sort.id": ("登録順（ID）", "ID"),
    "sort.name": ("氏名", "name"),
    "sort.kana": ("フリガナ", "kana"),
    "sort.created_at": ("登録日時", "registered"),
    "sort.updated_at": ("更新日", "Updated"),
    "ascending": ("（昇順）", "(ascending)"),
    "descending": ("（降順）", "(descending)"),
    "per_page": ("表示件数", "Per page"),
    "search_result": ("検索結果", "Results"),
    "pages": ("ページ", "Pages"),
    "page_of": ("{page} / {pages} ページ", "Page {page} of {pages}"),
    "prev_page": ("前へ", "Previous"),
    "with_result": ("この検索結果の {n} 件に対して", "With these {n} customers"),
    "export_what": ("出力する内容", "Export"),
    "encoding": ("文字コード", "Encoding"),
    "export_csv": ("CSV を出力", "Export CSV"),
    "downloading": ("CSV を作成しています…", "Preparing the CSV…"),
    "download_done": ("CSV を保存しました。", "The CSV was saved."),
    "bulk_update": ("一括更新", "Bulk update"),
    "bulk_delete": ("一括削除", "Bulk delete"),
    "bulk_choose": (
        "検索結果の {n} 件の顧客に行う変更を選んでください。次の画面で確認します。",
        "Choose the changes for the {n} customers found; you confirm on the next page.",
    ),
    "bulk_confirm_update": (
        "検索結果の {n} 件の顧客を次のとおり変更します。よろしいですか。",
        "{n} customers will be changed as follows. Go ahead?",
    ),
    "bulk_confirm_delete": (
        "検索結果の {n} 件の顧客と、その履歴を削除します。元に戻せません。よろしいですか。",
        "{n} customers and their history will be deleted. This cannot be undone. Go ahead?",
    ),
    "bulk_do_update": ("{n} 件を更新する", "Update {n} customers"),
    "bulk_do_delete": ("{n} 件を削除する", "Delete {n} customers"),
    "bulk_updated": ("一括更新しました。", "The customers were updated."),
    "bulk_deleted": ("一括削除しました。", "The customers were deleted."),
    "next_step": ("確認へ進む", "Review"),
    "leave_unchanged": ("変更しない", "unchanged"),
    "set_checked": ("チェックする", "check"),
    "set_unchecked": ("チェックを外す", "uncheck"),
    "new_customer": ("顧客を登録", "New customer"),
    "edit_customer": ("顧客を編集", "Edit customer"),
    "created": ("登録しました。", "Created."),
    "created_duplicates": (
        "登録しました。同じ氏名の顧客がすでにいます（重複の可能性）。",
        "Created. A customer with the same name already exists (a possible duplicate).",
    ),
    "profile": ("基本情報", "Profile"),
    "required": ("必須", "required"),
    "required_help": ("* は必須項目です。", "* marks a required field."),
    "rule_width": (
        "全角の英数字は半角に揃えて保存します。",
        "Full-width letters and digits are saved half-width.",
    ),
    "rule_duplicates": (
        "同じ氏名の顧客がいると、登録後にお知らせします。",
        "You are told after saving when a customer with the same name exists.",
    ),
    "rule_phone.hyphen": (
        "ハイフン区切り（03-1234-5678）で保存します。",
        "Saved with hyphens (03-1234-5678).",
    ),
    "rule_phone.paren": ("かっこ区切り（(03)1234-5678）で保存します。", "Saved as (03)1234-5678."),
    "rule_phone.digits": (
        "数字だけ（0312345678）で保存します。",
        "Saved as digits only (0312345678).",
    ),
    "rule_postal": (
        "住所が空なら郵便番号から住所を補います。",
        "An empty address is filled from the postal code.",
    ),
    "rule_postal_check": (
        "7桁の郵便番号（例: 150-0001）を入力してください。住所が空なら郵便番号から補います。",
        "Enter a 7-digit postal code (e.g. 150-0001); an empty address is filled from it.",
    ),
    "not_set": ("（未設定）", "(not set)"),
    "purpose": ("変更の目的（任意）", "Purpose (optional)"),
    "purpose_help": ("変更履歴に記録されます。", "Recorded in the change history."),
    "add_activity": ("対応履歴を追加", "Add an activity"),
    "add_purchase": ("購入履歴を追加", "Add a purchase"),
    "activity_added": ("対応履歴を追加しました。", "The activity was added."),
    "purchase_added": ("購入履歴を追加しました。", "The purchase was added."),
    "content_fields": ("内容項目 1〜10", "Content fields 1-10"),
    "amount_help": (
        "空欄なら 数量 × 単価 です。入力するときは 数量 × 単価 と一致させてください。",
        "Left empty: quantity x unit price. When given, it must equal quantity x unit price.",
    ),
    "import_csv": ("CSV 取り込み", "Import CSV"),
    "import_help": (
        "顧客を CSV から取り込みます。1行でも誤りがあれば何も取り込みません。"
        "まずチェックのみで確かめてください。",
        "Import customers from a CSV file: all rows or none. Check the file first with a dry run.",
    ),
    "csv_file": ("CSV ファイル", "CSV file"),
    "csv_file_help": (
        "UTF-8（BOM 付き可）または Shift_JIS（CP932）。1行目は見出し（項目名）です。",
        "UTF-8 (with or without BOM) or Shift_JIS (CP932). The first line is the "
        "header (the field labels).",
    ),
    "dry_run_check": ("チェックのみ（書き込まない）", "Dry run (write nothing)"),
    "import_run": ("取り込む", "Import"),
    "uploading": ("送信して確認しています…", "Uploading and checking…"),
    "dry_run_ok": (
        "チェック完了: すべての行を取り込めます。",
        "Dry run passed: every row can be imported.",
    ),
    "import_done": ("取り込みました。", "Imported."),
    "dry_run_nothing_written": (
        "チェックのみのため、何も書き込んでいません。",
        "A dry run writes nothing.",
    ),
    "file": ("ファイル", "File"),
    "rows_in_file": ("データ行数", "Data rows"),
    "rows_created": ("登録した顧客", "Customers created"),
    "companies_created": ("登録した会社", "Companies created"),
    "import_problems": ("取り込めない行", "Rows that cannot be imported"),
    "row": ("行", "Row"),
    "column": ("列", "Column"),
    "more_problems": ("ほかに {n} 件の問題があります。", "{n} more problems."),
    "users": ("ユーザー", "Users"),
    "name": ("名前", "Name"),
    "department": ("部署", "Department"),
    "change": ("変更", "Change"),
    "change_role": ("権限を変更", "Change the role"),
    "change_department": ("部署を変更", "Change the department"),
    "disabled": ("無効", "disabled"),
    "user.enable": ("有効にする", "Enable"),
    "user.disable": ("無効にする", "Disable"),
    "user.password": ("パスワード再発行", "Reset password"),
    "user.remove": ("テナントから外す", "Remove"),
    "remove_user": ("テナントから外す", "Remove from the tenant"),
    "confirm_remove_user": (
        "{login} をこのテナントから外します。ログインと他のテナントはそのまま"
        "です。よろしいですか。",
        "{login} will be removed from this "
        "tenant (the login and its other tenants stay). Go ahead?",
    ),
    "new_password_for": ("{login} の新しいパスワード", "New password for {login}"),
    "password_shown_once": (
        "このパスワードは今回だけ表示されます。本人に安全な方法で伝えてください。",
        "This password is shown only this once. Give it to the user safely.",
    ),
    "user_departments": ("ユーザー部署マスタ", "User departments"),
    "add_department": ("部署を追加", "Add a department"),
    "user_saved": ("ユーザーを更新しました。", "The user was updated."),
    "user_removed": ("ユーザーをテナントから外しました。", "The user was removed."),
    "department_added": ("部署を追加しました。", "The department was added."),
    # the problems of a record form, by pattern (see PROBLEM_PATTERNS)
    "problem.required": ("入力してください。", "Required."),
    "problem.date": ("日付（YYYY-MM-DD）で入力してください。", "Enter a date (YYYY-MM-DD)."),
    "problem.number": ("整数で入力してください。", "Enter a whole number."),
    "problem.email": ("メールアドレスの形式ではありません。", "This is not an e-mail address."),
    "problem.too_long": ("{n} 文字以内で入力してください。", "At most {n} characters."),
    "problem.too_many_digits": ("桁数が多すぎます。", "Too many digits."),
    "problem.picklist": ("選択肢にない値です。", "Not one of the choices."),
    "problem.amount": (
        "金額が 数量 × 単価（{product}）と一致しません。",
        "The amount is not quantity x unit price ({product}).",
    ),
    "problem.postal_code": (
        "郵便番号ではありません（7桁、例: 150-0001）。",
        "Not a Japanese postal code (7 digits, e.g. 150-0001).",
    ),
    "problem.checkbox_disabled": (
        "設定で無効になっているチェック項目です。",
        "This checkbox is disabled in the configuration.",
    ),
}


#: Server messages the console translates: (pattern, catalogue key). Named groups fill the
#: key's ``{placeholders}``; a ``status`` or ``role`` group is itself translated. A message
#: no pattern matches is shown as the server worded it, marked as English (``lang="en"``),
#: under the error code's translated title.
MESSAGE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), k)
    for p, k in (
        (r"login id or password is wrong", "msg.bad_login"),
        (r"the form has expired or did not come from this site", "msg.form_expired"),
        (r"the login form has expired or did not come from this site", "msg.login_form_expired"),
        (r"reload the page and submit it again", "msg.reload_and_submit"),
        (r"submit it again", "msg.submit_again"),
        (
            r"only an admin of '(?P<tenant>[^']+)' may .+; '(?P<login>[^']+)' is '(?P<role>[^']+)'",
            "msg.admin_only",
        ),
        (r"no customer with phone number (?P<number>.+)", "msg.no_phone"),
        (r"register the caller as a new contact", "msg.register_caller"),
        (r"this is not a copy key: .*", "msg.not_copy_key"),
        (r"copy key has the wrong length.*", "msg.key_length"),
        (r"copy key contains characters that cannot appear in a key", "msg.key_chars"),
        (r"copy key checksum does not match.*", "msg.key_checksum"),
        (r"copy key was already used.*", "msg.key_used"),
        (r"paste the whole key the target tenant's admin generated", "msg.paste_key"),
        (r"approving transfer (?P<id>\d+) would strand data .*", "msg.strand_data"),
        (r"remap each removed value .*", "msg.remap_or_force"),
        (
            r"remap (?P<remaps>.+) matches no removed picklist value held by records",
            "msg.stray_remap",
        ),
        (r"transfer (?P<id>\d+) is already (?P<status>[a-z ]+)", "msg.already"),
        (r"transfer (?P<id>\d+) is (?P<status>[a-z_]+), not applied", "msg.not_applied"),
        (
            r"the configuration changed after transfer (?P<id>\d+) was applied "
            r"\(now version (?P<version>\d+)\)",
            "msg.changed_after",
        ),
        (r"the session has ended", "msg.session_ended"),
        (r"log in again", "msg.log_in_again"),
        (r"no transfer (?P<id>\d+)( .*)?", "msg.no_transfer"),
        (r"configuration version (?P<version>\d+) does not exist", "msg.no_version"),
        (
            r"version (?P<version>\d+) is not older than the current version (?P<current>\d+)",
            "msg.not_older",
        ),
        (r"too many failed .*", "msg.too_many"),
        (r"the request is not valid", "msg.invalid_request"),
        (r"Not Found", "msg.not_found_page"),
        (r"choose a CSV file to import", "msg.choose_csv"),
        (r"the (contact|activity|purchase) is not valid", "msg.not_valid"),
        (r"fix the listed fields and try again", "msg.fix_fields"),
        (r"you cannot [a-z]+ yourself", "msg.not_yourself"),
        (r"ask another admin", "msg.ask_another_admin"),
        (r"'(?P<login>[^']+)' is the tenant's last admin and cannot be [a-z]+", "msg.last_admin"),
        (r"make another user admin first", "msg.make_admin_first"),
    )
]


#: The problems of a record form (a service's ``FIELD: reason``, less the field), by
#: pattern; one no pattern matches is shown as the service worded it, marked English.
PROBLEM_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), k)
    for p, k in (
        (r"required( \(.*\))?|may not be empty", "problem.required"),
        (r"expected a date YYYY-MM-DD, got .*", "problem.date"),
        (r"expected a whole number, got .*", "problem.number"),
        (r".* is not an e-mail address", "problem.email"),
        (r"longer than (?P<n>\d+) characters", "problem.too_long"),
        (r"too many digits", "problem.too_many_digits"),
        (r".* is not an active value of picklist .*", "problem.picklist"),
        (r"-?\d+ is not quantity x unit price \((?P<product>[^)]*)\)", "problem.amount"),
        (r".* is not a Japanese postal code .*", "problem.postal_code"),
        (r"checkbox \d+ is disabled in the configuration", "problem.checkbox_disabled"),
    )
]


class Text:
    """The catalogue in one language; templates call it as ``t("key")``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else LANGS[0]
        self._index = LANGS.index(self.lang)

    def __call__(self, key: str, **values: object) -> str:
        pair = MESSAGES.get(key)
        if pair is None:
            return key
        text = pair[self._index]
        return text.format(**values) if values else text

    def of(self, prefix: str, value: object) -> str:
        """A value from the data (a status, a role, a section) in words, or as is."""
        key = f"{prefix}.{value}"
        return self(key) if key in MESSAGES else str(value)

    def origin(self, origin: str) -> str:
        kind, _, n = origin.partition(":")
        key = f"origin.{kind}"
        return self(key, n=n) if key in MESSAGES else origin

    def impact(self, item: Mapping[str, Any]) -> str:
        """One line of a plan's data impact (:func:`provisioner.services.crm.impact.describe`)."""
        key = f"impact.{item.get('kind')}"
        if key not in MESSAGES:
            return str(item.get("kind"))
        values = {k: v for k, v in item.items() if isinstance(v, str | int)}
        if item.get("kind") == "workflow_matches":
            values["change"] = self.of("wf_change", item.get("change"))
            values["state"] = self.of("workflow_state", item.get("state"))
        try:
            return self(key, **values)
        except (KeyError, IndexError):
            return str(item.get("kind"))

    def message(self, text: str | None) -> tuple[str | None, bool]:
        """A server message in this language, and whether it was translated."""
        if not text:
            return text, True
        for pattern, key in MESSAGE_PATTERNS:
            found = pattern.fullmatch(text)
            if found:
                values = {
                    k: self.of(k, v.replace(" ", "_")) if k in ("status", "role") else v
                    for k, v in found.groupdict().items()
                    if v is not None
                }
                return self(key, **values), True
        return text, self.lang == "en"

    def problem(self, reason: str) -> Markup | str:
        """One problem of a form field in this language (else as worded, marked English)."""
        for pattern, key in PROBLEM_PATTERNS:
            found = pattern.fullmatch(reason)
            if found:
                return self(key, **{k: v for k, v in found.groupdict().items() if v})
        return reason if self.lang == "en" else Markup('<span lang="en">{}</span>').format(reason)

    def error(self, error: Mapping[str, Any]) -> dict[str, Any]:
        """An error body (``ProvisionerError.to_dict()``) as the console shows it."""
        code = str(error.get("code") or "error")
        message, message_ok = self.message(error.get("message"))
        hint, hint_ok = self.message(error.get("hint"))
        return {
            "code": code,
            "title": self.of("error", code) if f"error.{code}" in MESSAGES else self("error.error"),
            "message": message,
            "message_translated": message_ok,
            "hint": hint,
            "hint_translated": hint_ok,
            "problems": list(error.get("problems") or []),
        }


def language(request: Request) -> str:
    chosen = request.cookies.get("provisioner_lang")
    if chosen in LANGS:
        return chosen
    accept = request.headers.get("accept-language", "").lower()
    return "en" if accept.startswith("en") else "ja"


def translator(lang: str) -> Text:
    return Text(lang)
