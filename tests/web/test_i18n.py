"""One catalogue for every string the console shows, complete in both languages."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from provisioner import errors
from provisioner.config.diff import PLAN_SECTIONS
from provisioner.config.document import BUILTIN_ROLES, STANDARD_FIELDS
from provisioner.services.crm import impact
from provisioner.web import app as web_app
from provisioner.web import console, i18n

TEMPLATES = Path(console.__file__).parent / "templates"
#: t("key"), t('key'), t("key", n=1): the literal keys the templates and console.py use
LITERAL = re.compile(r"""\bt\(\s*["']([a-z_.]+)["']""")


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _literal_keys() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for path in [*TEMPLATES.glob("*.html"), *Path(console.__file__).parent.glob("console*.py")]:
        for key in LITERAL.findall(path.read_text(encoding="utf-8")):
            used.setdefault(key, set()).add(path.name)
    return used


def test_every_entry_has_both_languages_with_the_same_placeholders() -> None:
    for key, pair in i18n.MESSAGES.items():
        assert len(pair) == len(i18n.LANGS), key
        ja, en = pair
        assert ja.strip(), f"{key}: empty in Japanese"
        assert en.strip(), f"{key}: empty in English"
        assert _placeholders(ja) == _placeholders(en), key


def test_every_key_the_pages_use_is_in_the_catalogue() -> None:
    used = _literal_keys()
    assert len(used) > 100  # the scan sees the templates
    missing = {k: sorted(v) for k, v in used.items() if k not in i18n.MESSAGES}
    assert not missing, f"keys missing from i18n.MESSAGES: {missing}"


@pytest.mark.parametrize(
    ("prefix", "values"),
    [
        ("status", ("pending", "applied", "rejected", "rolled_back")),
        ("key_state", ("active", "used", "revoked", "locked", "expired")),
        ("role", BUILTIN_ROLES),
        ("section", (*PLAN_SECTIONS, *console.SECTION_CHOICES)),
        ("op", ("added", "changed", "removed")),
        ("origin", ("initial", "set", "transfer", "rollback")),
        ("memo_type", ("text", "picklist")),
        ("object", tuple(STANDARD_FIELDS)),
        (
            "impact",
            (
                "picklist_value_removed",
                "memo_retyped_invalid",
                "memo_retyped",
                "checkbox_disabled",
                "checkbox_relabelled",
                "classification_removed",
                "custom_field_removed",
            ),
        ),
    ],
)
def test_values_from_the_data_have_words_in_both_languages(
    prefix: str, values: tuple[str, ...]
) -> None:
    missing = [v for v in values if f"{prefix}.{v}" not in i18n.MESSAGES]
    assert not missing, f"{prefix}: {missing}"


def test_the_impact_kinds_are_the_services_kinds() -> None:
    """A new kind of data impact in the service fails here until it has words."""
    source = Path(impact.__file__).read_text(encoding="utf-8")
    kinds = set(re.findall(r'kind="([a-z_]+)"', source))
    assert kinds
    assert {k for k in kinds if f"impact.{k}" not in i18n.MESSAGES} == set()


def test_every_error_code_has_a_title() -> None:
    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for c in cls.__subclasses__() for s in subclasses(c))]

    codes = {c.code for c in subclasses(errors.ProvisionerError)}
    codes |= set(web_app._HTTP_CODES.values())
    codes |= {"replanned", "conflict", "database_error", "internal_error"}
    assert {c for c in codes if f"error.{c}" not in i18n.MESSAGES} == set()


def test_every_message_pattern_names_a_catalogue_key_with_its_placeholders() -> None:
    for pattern, key in i18n.MESSAGE_PATTERNS:
        assert key in i18n.MESSAGES, key
        for text in i18n.MESSAGES[key]:
            assert _placeholders(text) <= set(pattern.groupindex), key


def test_server_messages_are_translated() -> None:
    ja, en = i18n.Text("ja"), i18n.Text("en")
    denied = {
        "code": "permission_denied",
        "message": "only an admin of 'acme' may send the configuration; 'acme-gen' is 'general'",
    }
    shown = ja.error(denied)
    assert shown["title"] == "この操作は許可されていません"
    assert shown["message"] == (
        "この操作はテナント「acme」の管理者だけが行えます（acme-gen の権限: 一般）。"
    )
    assert shown["message_translated"]
    assert en.error(denied)["message"] == (
        "Only an admin of 'acme' may do this; acme-gen is general."
    )
    assert ja.message("transfer 3 is already rolled back") == (
        "受信設定 #3 はすでに 取り消し済み です。",
        True,
    )
    # a message without a pattern is shown as the server worded it, marked as English
    assert ja.message("something new went wrong") == ("something new went wrong", False)
    assert en.message("something new went wrong") == ("something new went wrong", True)


def test_a_missing_key_shows_the_key_rather_than_failing_the_page() -> None:
    assert i18n.Text("ja")("no.such.key") == "no.such.key"
