"""The C module (``_postings.c``) writes index blocks in the format that
``search_index/codec.py`` defines: its constants must agree with the codec's
(the behaviour is compared in ``test_postings_native.py``; this catches a format
change made on one side only, even where the module is not built)."""

from __future__ import annotations

import re
from pathlib import Path

from provisioner.services.crm.search_index import codec, gram_keys

SOURCE = (
    Path(__file__).resolve().parents[2] / "provisioner" / "services" / "crm" / "_postings.c"
).read_text(encoding="utf-8")


def _define(name: str) -> str:
    found = re.search(rf"^#define {name} (.+)$", SOURCE, re.MULTILINE)
    assert found, f"_postings.c defines no {name}"
    return found.group(1).strip()


def test_the_block_size_agrees() -> None:
    assert int(_define("BLOCK")) == codec.BLOCK == 1 << codec.BLOCK_BITS
    assert _define("BITMAP_BYTES") == "(BLOCK / 8)"
    assert codec.BITMAP_BYTES == codec.BLOCK // 8


def test_the_set_tags_agree() -> None:
    assert (codec.SPARSE, codec.DENSE) == (b"S", b"D")
    assert "p[0] = 'S';" in SOURCE  # a sparse set: tag + little-endian uint16 offsets
    assert "p[0] = 'D';" in SOURCE  # a dense set: tag + the bitmap
    assert codec.encode([1, 2])[:1] == codec.SPARSE
    assert codec.encode(list(range(codec.SPARSE_MAX + 1)))[:1] == codec.DENSE


def test_the_field_separator_and_position_keys_agree() -> None:
    assert gram_keys.SEP == gram_keys.POS == "\x1f"
    assert "c[i] != 0x1F" in SOURCE  # fields are split on the separator
    assert '"\\x1f%u.*"' in SOURCE  # trigram + POS + "j.*"
    assert '"\\x1f%u.%u"' in SOURCE  # trigram + POS + "j.o"
    assert gram_keys.keys("abcd") >= {"abc\x1f0.0", "bcd\x1f0.1"}


def test_the_limits_are_passed_not_duplicated() -> None:
    """POSITIONS and SPARSE_MAX are arguments of every entry point of the module."""
    assert "POSITIONS" not in SOURCE
    assert "SPARSE_MAX" not in SOURCE
    assert SOURCE.count("sparse_max") >= 2
    assert SOURCE.count("positions") >= 2
