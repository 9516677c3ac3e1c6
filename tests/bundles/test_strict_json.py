"""bundles/strict_json.py: strict JSON for untrusted input, canonical form for payloads.

Refused: duplicate keys, NaN / Infinity, nesting deeper than 64, more than
16 MiB, invalid JSON; a signed payload must also be RFC 8785 canonical.
"""

from __future__ import annotations

import pytest

from provisioner.bundles.strict_json import (
    MAX_BYTES,
    MAX_DEPTH,
    check_size,
    diagnose,
    loads_canonical,
    loads_strict,
    loads_strict_fast,
)
from provisioner.errors import BundleRejected


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_plain_json_is_read() -> None:
    assert loads_strict(b'{"a": [1, "x", null, true]}') == {"a": [1, "x", None, True]}
    assert loads_strict('{"名前": "田中"}'.encode()) == {"名前": "田中"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "contains NaN"),
        (b"[Infinity]", "contains Infinity"),
        (b'{"a": ', "not valid JSON"),
        (b"\xff", "not UTF-8"),
    ],
    ids=["duplicate", "nan", "infinity", "truncated", "not-utf8"],
)
def test_what_json_forbids_or_allows_ambiguously_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(BundleRejected, match=message):
        loads_strict(data)


def test_depth_is_limited() -> None:
    assert loads_strict(_nested(MAX_DEPTH)) is not None
    with pytest.raises(BundleRejected, match=f"deeper than {MAX_DEPTH}"):
        loads_strict(_nested(MAX_DEPTH + 1))
    with pytest.raises(BundleRejected, match=f"deeper than {MAX_DEPTH}"):
        loads_strict(_nested(100_000))  # no RecursionError escapes


def test_size_is_limited() -> None:
    check_size(b"x" * MAX_BYTES, "bundle")
    with pytest.raises(BundleRejected, match="16 MiB"):
        check_size(b"x" * (MAX_BYTES + 1), "bundle")


def test_the_fast_reader_tells_canonical_input() -> None:
    assert loads_strict_fast(b'{"a":1,"b":[2]}') == ({"a": 1, "b": [2]}, True)
    assert loads_strict_fast(b'{"a":1}\n') == ({"a": 1}, True)
    assert loads_strict_fast(b'{"b":1,"a":2}') == ({"b": 1, "a": 2}, False)  # unsorted
    assert loads_strict_fast(b'{"a": 1}') == ({"a": 1}, False)  # whitespace
    with pytest.raises(BundleRejected, match="duplicate key"):
        loads_strict_fast(b'{"a":1,"a":1}')
    with pytest.raises(BundleRejected, match="deeper than"):
        loads_strict_fast(_nested(MAX_DEPTH + 1))


def test_a_signed_payload_must_be_canonical() -> None:
    assert loads_canonical(b'{"a":1,"b":"\xe7\x94\xb0"}') == {"a": 1, "b": "田"}
    for data, message in [
        (b'{"b":1,"a":2}', "not RFC 8785 canonical"),
        (b'{"a": 1}', "not RFC 8785 canonical"),
        (b'{"a":1,"a":1}', "duplicate key 'a'"),
        (b'{"a":"\\u0041"}', "not RFC 8785 canonical"),
        (b'{"a":' + b"1" * 30 + b"}", "integer beyond 64 bits"),
        (b'{"a":"\\ud800"}', "not valid Unicode"),
        (b"{", "not valid JSON"),
    ]:
        with pytest.raises(BundleRejected, match=message):
            loads_canonical(data, what="payload")


def test_diagnose_names_the_duplicate_key_path() -> None:
    error = diagnose(b'{"x":{"k":1,"k":2}}', what="payload")
    assert error.message == "payload has a duplicate key 'k'"
    assert error.hint == "each object member may appear once"
