"""The C build of an index block's keys and sets equals the Python reference.

``_postings.rows`` and ``_postings.postings`` (``provisioner/services/crm/_postings.c``)
against ``search_index._block_rows(search_index._postings(fields))`` and
``search_index._postings``: generated field values (any character but the separator,
astral ones, lone surrogates, empty and long values, offsets repeated or by the
thousand), and the seed data written through both paths (a new block, and a block
merged into). Where ``CI`` is set the extension must be built: no silent fallback.
"""

from __future__ import annotations

import importlib
import os
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from provisioner.services.crm import search_index, seed
from tests.crm.helpers import configured
from tests.support import World

native = search_index._native
needs_native = pytest.mark.skipif(native is None, reason="the C extension is not built")

Fields = list[dict[str, list[int]]]

#: a few characters of every string kind (latin-1, UCS-2, UCS-4, a lone surrogate)
FEW = "ab\x00é\xff田中\ud800𠀋\U0010ffff"
SHORT = st.text(st.sampled_from(FEW), max_size=6)
ANY = st.text(st.characters(exclude_characters="\x1f"), max_size=90)
LONG = st.text(st.sampled_from("ab𠀋"), min_size=search_index.POSITIONS,
               max_size=search_index.POSITIONS + 80)
FEW_OFFSETS = st.lists(st.integers(0, search_index.MASK), max_size=5)
REPEATS = st.lists(st.integers(0, 40), min_size=1, max_size=80)
#: thousands of offsets (dense sets), wrapping around to repeat some
MANY = st.tuples(st.integers(0, search_index.MASK), st.integers(1, 40),
                 st.integers(1000, 6000)).map(
    lambda t: [(t[0] + i * t[1]) & search_index.MASK for i in range(t[2])])
PAIR = st.one_of(st.tuples(SHORT, st.one_of(FEW_OFFSETS, REPEATS, MANY)),
                 st.tuples(st.one_of(ANY, LONG), st.one_of(FEW_OFFSETS, REPEATS)))
FIELDS = st.lists(st.lists(PAIR, max_size=12).map(dict), min_size=1, max_size=4)


def _python_rows(fields: Fields) -> list[tuple[str, int, bytes]]:
    return search_index._block_rows(search_index._postings(fields))


def _python_postings(fields: Fields) -> dict[str, list[int]]:
    return {key: sorted(set(offsets)) for key, offsets in search_index._postings(fields).items()}


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=FIELDS,
       positions=st.sampled_from([search_index.POSITIONS, 0, 1, 5]),
       sparse_max=st.sampled_from([search_index.SPARSE_MAX, 1, 3, 47, 100]))
def test_native_rows_and_postings_equal_the_python_ones(fields: Fields, positions: int,
                                                        sparse_max: int) -> None:
    assert native is not None
    with mock.patch.object(search_index, "POSITIONS", positions), \
            mock.patch.object(search_index, "SPARSE_MAX", sparse_max):
        expected_rows = _python_rows(fields)
        expected_postings = _python_postings(fields)
    assert native.rows(fields, positions, sparse_max) == expected_rows
    assert native.postings(fields, positions) == expected_postings


@needs_native
def test_native_rows_cover_every_kind_of_set() -> None:
    assert native is not None
    many = list(range(0, 3 * search_index.SPARSE_MAX, 3))
    fields: Fields = [{"田中太郎": [10, 2, 2], "": [4], "a": many, "𠀋" * 70: [65535, 0]},
                      {"中太": many[::-1], "x" * 5000: [1]}]
    rows = native.rows(fields, search_index.POSITIONS, search_index.SPARSE_MAX)
    assert rows == _python_rows(fields)
    found = {key: (n, data) for key, n, data in rows}
    assert found["田"] == (2, b"S\x02\x00\x0a\x00")
    assert found["中太"][0] == len(many) + 2
    assert found["中太"][1][:1] == b"D"
    assert len(found["中太"][1]) == 1 + search_index.BLOCK // 8
    assert found["田中太\x1f0.0"] == (2, b"S\x02\x00\x0a\x00")
    assert found["𠀋𠀋𠀋\x1f0.*"] == (2, b"S\x00\x00\xff\xff")
    assert found["xxx\x1f1.*"] == (1, b"S\x01\x00")
    assert "" not in found


@needs_native
@pytest.mark.parametrize(("fields", "error"), [
    ("not a list", TypeError),
    ([["not a dict"]], TypeError),
    ([{1: [1]}], TypeError),
    ([{"a": {1}}], TypeError),
    ([{"a": [1.0]}], TypeError),
    ([{"a": [True]}], TypeError),
    ([{"a": [-1]}], ValueError),
    ([{"a": [65536]}], ValueError),
    ([{"a": [2**80]}], ValueError),
])
def test_native_rejects_what_a_builder_never_passes(fields: object, error: type) -> None:
    assert native is not None
    with pytest.raises(error):
        native.rows(fields, 64, 2048)  # type: ignore[arg-type]
    with pytest.raises(error):
        native.postings(fields, 64)  # type: ignore[arg-type]


@needs_native
def test_native_rejects_bad_limits() -> None:
    assert native is not None
    with pytest.raises(ValueError, match="positions"):
        native.rows([], -1, 2048)
    with pytest.raises(ValueError, match="sparse_max"):
        native.rows([], 64, 0)
    assert native.rows([], 64, 2048) == []
    assert native.postings([{}], 64) == {}


def test_the_extension_is_built_where_ci_is_set() -> None:
    if not os.environ.get("CI"):
        pytest.skip("enforced only where CI is set")
    importlib.import_module("provisioner.services.crm._postings")
    assert search_index._native is not None


def _fields(texts: dict[int, str]) -> dict[int, Fields]:
    """Per block, what a Builder collects from these contacts (in id order)."""
    blocks: dict[int, Fields] = {}
    for contact_id, stored in sorted(texts.items()):
        fields = blocks.setdefault(contact_id >> search_index.BLOCK_BITS, [])
        parts = stored.split("\x1f")
        fields.extend({} for _ in range(len(parts) - len(fields)))
        for values, part in zip(fields, parts, strict=False):
            values.setdefault(part, []).append(contact_id & search_index.MASK)
    return blocks


def _stored(world: World, tenant_id: int) -> tuple[dict[int, str],
                                                   dict[tuple[str, int], tuple[int, bytes]]]:
    with world.app.transaction() as ctx:
        conn = ctx.session.connection()
        texts = {i: t for i, t in conn.execute(text(
            "SELECT id, search_text FROM crm_contacts WHERE tenant_id = :t"), {"t": tenant_id})}
        index = {(g, b): (n, bytes(d)) for g, b, n, d in conn.execute(text(
            "SELECT gram, block, n, data FROM crm_search_grams WHERE tenant_id = :t"),
            {"t": tenant_id})}
    return texts, index


@needs_native
def test_seed_data_is_indexed_the_same_on_both_paths(world: World) -> None:
    """Seeded twice (a new block, then one merged into), natively and in Python: each
    tenant's stored index is the Python reference built from its stored texts."""
    for slug, use in (("native", native), ("python", None)):
        configured(world, slug)
        actor = world.actor(slug)
        with mock.patch.object(search_index, "_native", use):
            with world.app.transaction() as ctx:
                seed.seed_contacts(ctx, actor, 400, seed=21)
            with world.app.transaction() as ctx:
                seed.seed_contacts(ctx, actor, 100, seed=22)
        texts, index = _stored(world, actor.tenant_id)
        assert len(texts) == 500
        expected: dict[tuple[str, int], tuple[int, bytes]] = {}
        for block, fields in _fields(texts).items():
            assert native is not None
            rows = native.rows(fields, search_index.POSITIONS, search_index.SPARSE_MAX)
            assert rows == _python_rows(fields)
            assert native.postings(fields, search_index.POSITIONS) == _python_postings(fields)
            for gram, n, data in rows:
                expected[(gram, block)] = (n, data)
        assert index == expected, slug
