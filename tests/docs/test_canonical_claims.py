"""docs/bundle-format.md section 3: orjson's sorted output is RFC 8785 for our grammar.

The grammar: member names are ASCII, numbers are integers with |n| <= 2**53 - 1,
strings are any Unicode text. For such data ``canonical_bytes`` must equal the
``rfc8785`` reference implementation byte for byte, and the configuration
models must refuse the integers for which the two would differ.
"""

from __future__ import annotations

import string
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.canonical import canonical_bytes
from provisioner.config.defaults import default_document
from provisioner.config.validate import normalized_sections
from provisioner.errors import ValidationFailed

SAFE = 2**53 - 1

names = st.text(alphabet=string.ascii_letters + string.digits + "._-", max_size=12)
scalars = st.none() | st.booleans() | st.integers(min_value=-SAFE, max_value=SAFE) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(names, inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_canonical_bytes_equal_rfc8785_for_the_grammar(data: Any) -> None:
    assert canonical_bytes(data) == rfc8785.dumps(data)


def test_default_document_is_rfc8785_canonical() -> None:
    data = default_document().to_data()
    assert canonical_bytes(data) == rfc8785.dumps(data)


def test_control_characters_and_japanese_text_escape_as_rfc8785() -> None:
    data = {"news": "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\u2028\ufeff年賀状😀'}
    assert canonical_bytes(data) == rfc8785.dumps(data)


def _workflow(value: Any) -> dict[str, Any]:
    return {
        "workflows": [
            {
                "code": "w1",
                "label": "W",
                "object": "contact",
                "trigger": {"event": "created"},
                "conditions": {
                    "match": "all",
                    "rules": [{"field": "contact.memo_1", "op": "eq", "value": value}],
                },
                "actions": [{"type": "set_field", "field": "contact.memo_2", "value": value}],
            }
        ]
    }


@pytest.mark.parametrize("value", [SAFE, -SAFE])
def test_safe_integers_in_free_values_are_accepted(value: int) -> None:
    data = normalized_sections(_workflow(value))
    assert canonical_bytes(data) == rfc8785.dumps(data)


@pytest.mark.parametrize("value", [SAFE + 1, -SAFE - 1, 2**63])
def test_integers_outside_the_safe_range_are_refused(value: int) -> None:
    with pytest.raises(ValidationFailed):
        normalized_sections(_workflow(value))
