"""search_keys (the joined search text) and search_key_column (a column's keys) equal
search_key applied part by part."""

from __future__ import annotations

import random

from provisioner.services.crm.text import (
    nfkc,
    nfkc_column,
    search_key,
    search_key_column,
    search_keys,
)

#: characters where normalising the joined text could differ from part by part: combining
#: marks, half-width voiced marks, Hangul jamo, final sigma, white space of every kind
#: (U+001C..U+001F count as white space), full-width forms, ligatures
TRICKY = list(
    "aAΣσςΑİIıßẞ ｶﾞﾟ゛゙\u3099\u309a\u0301\u0307éｅ１２ＡＢ　\t\n\x1f\x1c\x1d\x1e"
    "\x85\xa0㈱①ﬁ가\u1100\u1161\u11a8田中、-.()+@"
)


def test_the_joined_search_text_equals_the_keys_of_its_parts() -> None:
    rng = random.Random(7)
    for _ in range(50000):
        parts = [
            "".join(rng.choices(TRICKY, k=rng.randint(0, 6))) for _ in range(rng.randint(0, 6))
        ]
        assert search_keys(parts) == "\x1f".join(search_key(p) for p in parts if p), parts


def test_a_part_holding_the_separator_is_keyed_on_its_own() -> None:
    assert search_keys(["a\x1fB", "", "Ｃ Ｄ"]) == "ab\x1fcd"
    assert search_keys(["ΑΣ", "Σ"]) == "ας\x1fσ"
    assert search_keys([]) == ""


def test_a_column_keyed_in_one_pass_equals_its_values_keyed_one_by_one() -> None:
    rng = random.Random(11)
    for _ in range(20000):
        values = [
            "".join(rng.choices(TRICKY, k=rng.randint(0, 6))) for _ in range(rng.randint(0, 8))
        ]
        assert search_key_column(values) == [search_key(v) for v in values], values
    assert search_key_column([]) == []
    assert search_key_column(["a\x1fB", "Ｃ Ｄ", "ΑΣ"]) == ["ab", "cd", "ας"]


def test_a_column_normalised_in_one_pass_equals_nfkc_of_each_value() -> None:
    rng = random.Random(12)
    for _ in range(20000):
        values = [
            "".join(rng.choices(TRICKY, k=rng.randint(0, 6))) for _ in range(rng.randint(0, 8))
        ]
        assert nfkc_column(values) == [nfkc(v) for v in values], values
    assert nfkc_column([]) == []
    assert nfkc_column([" a ", "b"]) == ["a", "b"]
