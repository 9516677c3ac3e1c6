"""A transfer's plan stored as its own part plus a part shared by the targets of a rollout."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.db import plans

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
_keys = st.sampled_from(
    ["mode", "sections", "summary", "changes", "base_version", "base_digest", "impact",
     "signer", "upgrade", "incoming_digest", "pinned_as", "transfer", "kept", "x"]
)  # fmt: skip
_nested = st.dictionaries(
    st.sampled_from(["pinned_as", "key_id", "transfer", "kept", "taken", "sections"]), _json
)
_plans = st.dictionaries(_keys, _nested | _json)

PLAN: dict[str, Any] = {
    "base_version": 2,
    "base_digest": "sha256:aa",
    "mode": "upgrade",
    "sections": ["checkboxes"],
    "summary": {"checkboxes": {"added": 0, "changed": 1, "removed": 0}},
    "changes": [{"section": "checkboxes", "key": "1", "op": "changed"}],
    "upgrade": {"source": "tenant:hq", "transfer": 8, "taken": ["a"], "kept": ["b"]},
    "signer": {"key_id": "k", "verified_source": True, "pinned_as": "本部"},
    "impact": {"items": [], "blocking": 0},
}


@settings(max_examples=300, deadline=None)
@given(_plans)
def test_split_then_join_gives_the_plan_back(plan: dict[str, Any]) -> None:
    own, shared = plans.split(plan)
    assert plans.join(own, shared) == plan
    assert plans.join(plans.stored_form(own, "sha256:x"), shared) == plan


def test_what_a_target_owns_stays_in_its_row_and_the_change_is_shared() -> None:
    own, shared = plans.split(PLAN)
    assert own == {
        "base_version": 2,
        "base_digest": "sha256:aa",
        "upgrade": {"transfer": 8, "kept": ["b"]},
        "signer": {"pinned_as": "本部"},
        "impact": {"items": [], "blocking": 0},
    }
    assert "pinned_as" not in shared["signer"]
    assert "kept" not in shared["upgrade"]
    other = dict(PLAN, base_version=5, base_digest="sha256:bb", signer=dict(PLAN["signer"]))
    other["upgrade"] = dict(PLAN["upgrade"], transfer=9, kept=["c", "d"])
    other["signer"]["pinned_as"] = "HQ"
    # another target of the same change: the same shared document
    assert plans.shared_document(other)[1:] == plans.shared_document(PLAN)[1:]


def test_a_plan_that_names_a_shared_part_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="shared"):
        plans.split({**PLAN, plans.SHARED: "sha256:forged"})


def test_a_whole_plan_reads_back_as_a_copy_of_itself() -> None:
    loaded = plans.load(None, PLAN)
    assert loaded == PLAN
    assert loaded is not PLAN


def test_a_detached_row_whose_shared_part_is_not_in_memory_says_so() -> None:
    with pytest.raises(RuntimeError, match="outside its session"):
        plans.load(None, {"base_version": 1, plans.SHARED: "sha256:" + "0" * 64})
