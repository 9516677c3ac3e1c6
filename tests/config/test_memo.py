"""The remembered paths of a rollout (config.memo) give what the plain ones give.

A rollout merges, checks and serialises many documents that share sections by
identity; each of these tests builds such documents and compares the memoised
result with the reference computation on the same documents.
"""

from __future__ import annotations

import copy
from typing import Any

from provisioner.canonical import canonical_bytes, canonical_members, sha256_hex
from provisioner.config import delta, references
from provisioner.config.defaults import default_document
from provisioner.config.memo import IdentityMemo
from provisioner.config.merge3 import merge3
from tests.support import checkbox_rule


def _template() -> dict[str, Any]:
    data = copy.deepcopy(default_document().to_data())
    data["workflows"] = [checkbox_rule("vip", 7), checkbox_rule("gold", 8)]
    return data


def _tenant(base: dict[str, Any], edit: Any) -> dict[str, Any]:
    """``base`` with a local change, sharing every untouched section with it (as stored)."""
    mine = copy.deepcopy(base)
    edit(mine)
    return delta.apply(base, delta.make(base, mine))  # type: ignore[no-any-return]


def _disable(index: int) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        doc["checkboxes"][index - 1]["enabled"] = False

    return edit


def _label(index: int, text: str) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        doc["checkboxes"][index - 1]["label"] = text

    return edit


def test_memoised_reference_checks_follow_each_documents_own_checkboxes() -> None:
    base = _template()
    docs = [
        _tenant(base, _label(1, "自店")),
        _tenant(base, _disable(8)),
        base,
        _disable_both(base),
        _tenant(base, _same_memo_index),  # a problem of its own, its checkboxes all enabled
        _tenant(base, _label(2, "別の店")),
    ]
    assert docs[1]["workflows"] is base["workflows"]  # shared: the check of rules is reused
    memo = IdentityMemo()
    for doc in [*docs, *docs]:  # the second time round, every part is remembered
        assert references.check(doc, memo=memo) == references.check(doc)
    assert references.check(docs[4], memo=memo) == [
        "memo_fields: index 2 is used more than once",
    ]
    assert references.check(docs[1], memo=memo) == ["workflows.gold: checkbox 8 is not enabled"]
    assert references.check(docs[3], memo=memo) == [
        "workflows.vip: checkbox 7 is not enabled",
        "workflows.gold: checkbox 8 is not enabled",
    ]
    assert memo.hits > 0


def _same_memo_index(doc: dict[str, Any]) -> None:
    doc["memo_fields"][1]["index"] = 2
    doc["memo_fields"][0]["index"] = 2


def _disable_both(base: dict[str, Any]) -> dict[str, Any]:
    def edit(doc: dict[str, Any]) -> None:
        _disable(7)(doc)
        _disable(8)(doc)

    return _tenant(base, edit)


def test_memoised_merges_equal_each_merge_alone() -> None:
    """Tenants of one template, each with its own change, upgraded to its next version."""
    base = _template()
    theirs = copy.deepcopy(base)
    theirs["checkboxes"][1]["label"] = "本部版"
    theirs["workflows"].append(checkbox_rule("new", 9))
    theirs["labels"]["contact.name"] = "お客様"
    tenants = [
        _tenant(base, _label(5, "自店")),
        _tenant(base, _label(2, "店舗版")),  # a conflict with theirs
        _tenant(base, _disable(9)),  # theirs' new rule breaks a reference: held back
        base,
        _tenant(base, _label(5, "別の店")),
    ]
    for prefer in (None, "ours", "theirs"):
        memo = IdentityMemo()
        for ours in [*tenants, *tenants]:
            alone = merge3(base, ours, theirs, prefer=prefer)  # type: ignore[arg-type]
            shared = merge3(base, ours, theirs, prefer=prefer, memo=memo)  # type: ignore[arg-type]
            assert shared.result == alone.result
            assert shared.to_dict() == alone.to_dict()
            assert shared.mixed == alone.mixed
        assert memo.hits > 0
    kinds = [c.kind for c in merge3(base, tenants[2], theirs, memo=IdentityMemo()).conflicts]
    assert kinds == ["references"]


def test_canonical_members_equal_canonical_bytes() -> None:
    from bench.bench_core import large_config

    for doc in (_template(), large_config(), {}, {"b": [], "a": {"y": 1, "x": "日本"}}):
        memo = IdentityMemo()

        def member(value: Any, memo: IdentityMemo = memo) -> bytes:
            return memo.get("bytes", (value,), lambda: canonical_bytes(value))

        assert bytes(canonical_members(doc, canonical_bytes)) == canonical_bytes(doc)
        assert bytes(canonical_members(doc, member)) == canonical_bytes(doc)
        pieces = canonical_members(doc, member)  # the members from the memo
        assert bytes(pieces) == canonical_bytes(doc)
        assert len(pieces) == len(canonical_bytes(doc))
        assert sha256_hex(pieces) == sha256_hex(canonical_bytes(doc))


def test_an_identity_is_never_confused_with_an_equal_value_or_a_reused_id() -> None:
    memo = IdentityMemo(limit=2)
    first = [1]
    assert memo.get("t", (first,), lambda: "first") == "first"
    assert memo.get("t", ([1],), lambda: "other") == "other"
    assert memo.get("t", (first,), lambda: "again") == "first"
    for n in range(5):  # dropped beyond the limit, then computed again
        memo.get("t", ([n],), lambda n=n: n)  # type: ignore[misc]
    assert len(memo.items) == 2
    assert memo.get("t", (first,), lambda: "recomputed") == "recomputed"
