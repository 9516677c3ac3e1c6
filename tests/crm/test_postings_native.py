"""The C build of an index block's keys and sets equals the Python reference.

``_postings.rows`` and ``_postings.postings`` (``provisioner/services/crm/_postings.c``)
against ``writer.block_rows(writer.postings(fields))`` and
``writer.postings``: generated field values (any character but the separator,
astral ones, lone surrogates, empty and long values, offsets repeated or by the
thousand), and the seed data written through both paths (a new block, and a block
merged into). ``_postings.text_rows`` and ``text_postings`` (the Builder's grouping of
search texts by field value done natively) against the same reference over the texts
grouped in Python (``Builder._grouped``), and a Builder on both paths. Where ``CI``
is set the extension must be built: no silent fallback.
"""

from __future__ import annotations

import importlib
import os
import random
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from provisioner.services.crm import search_index, seed
from provisioner.services.crm.search_index import codec, gram_keys, writer
from tests.crm.helpers import configured
from tests.support import World

native = writer._native
needs_native = pytest.mark.skipif(native is None, reason="the C extension is not built")

Fields = list[dict[str, list[int]]]

#: a few characters of every string kind (latin-1, UCS-2, UCS-4, a lone surrogate)
FEW = "ab\x00é\xff田中\ud800𠀋\U0010ffff"
SHORT = st.text(st.sampled_from(FEW), max_size=6)
ANY = st.text(st.characters(exclude_characters="\x1f"), max_size=90)
LONG = st.text(
    st.sampled_from("ab𠀋"), min_size=search_index.POSITIONS, max_size=search_index.POSITIONS + 80
)
FEW_OFFSETS = st.lists(st.integers(0, search_index.MASK), max_size=5)
REPEATS = st.lists(st.integers(0, 40), min_size=1, max_size=80)
#: thousands of offsets (dense sets), wrapping around to repeat some
MANY = st.tuples(
    st.integers(0, search_index.MASK), st.integers(1, 40), st.integers(1000, 6000)
).map(lambda t: [(t[0] + i * t[1]) & search_index.MASK for i in range(t[2])])
PAIR = st.one_of(
    st.tuples(SHORT, st.one_of(FEW_OFFSETS, REPEATS, MANY)),
    st.tuples(st.one_of(ANY, LONG), st.one_of(FEW_OFFSETS, REPEATS)),
)
FIELDS = st.lists(st.lists(PAIR, max_size=12).map(dict), min_size=1, max_size=4)


def _python_rows(fields: Fields) -> list[tuple[str, int, bytes]]:
    return writer.block_rows(writer.postings(fields))


def _python_postings(fields: Fields) -> dict[str, list[int]]:
    return {key: sorted(set(offsets)) for key, offsets in writer.postings(fields).items()}


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=FIELDS,
    positions=st.sampled_from([search_index.POSITIONS, 0, 1, 5]),
    sparse_max=st.sampled_from([search_index.SPARSE_MAX, 1, 3, 47, 100]),
)
def test_native_rows_and_postings_equal_the_python_ones(
    fields: Fields, positions: int, sparse_max: int
) -> None:
    assert native is not None
    with (
        mock.patch.object(gram_keys, "POSITIONS", positions),
        mock.patch.object(codec, "SPARSE_MAX", sparse_max),
    ):
        expected_rows = _python_rows(fields)
        expected_postings = _python_postings(fields)
    assert native.rows(fields, positions, sparse_max) == expected_rows
    assert native.postings(fields, positions) == expected_postings


@needs_native
def test_native_rows_cover_every_kind_of_set() -> None:
    assert native is not None
    many = list(range(0, 3 * search_index.SPARSE_MAX, 3))
    fields: Fields = [
        {"田中太郎": [10, 2, 2], "": [4], "a": many, "𠀋" * 70: [65535, 0]},
        {"中太": many[::-1], "x" * 5000: [1]},
    ]
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
@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ("not a list", TypeError),
        ([["not a dict"]], TypeError),
        ([{1: [1]}], TypeError),
        ([{"a": {1}}], TypeError),
        ([{"a": [1.0]}], TypeError),
        ([{"a": [True]}], TypeError),
        ([{"a": [-1]}], ValueError),
        ([{"a": [65536]}], ValueError),
        ([{"a": [2**80]}], ValueError),
    ],
)
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


#: search texts: fields drawn from a small pool (so values repeat across contacts), any
#: number of them (empty ones too), astral characters and lone surrogates, long values
FIELD = st.one_of(SHORT, SHORT, ANY, LONG)
TEXT = st.lists(FIELD, min_size=1, max_size=7).map("\x1f".join)
#: (offset, text) of a block's contacts; offsets may repeat
CONTACTS = st.lists(
    st.tuples(st.one_of(st.integers(0, search_index.MASK), st.integers(0, 30)), TEXT), max_size=40
)


def _texts_fields(offsets: list[int], texts: list[str]) -> Fields:
    """What ``Builder._grouped`` makes of these contacts, written out independently."""
    fields: Fields = []
    for offset, stored in zip(offsets, texts, strict=True):
        parts = stored.split("\x1f")
        fields.extend({} for _ in range(len(parts) - len(fields)))
        for values, part in zip(fields, parts, strict=False):
            values.setdefault(part, []).append(offset)
    return fields


def _check_texts(
    offsets: list[int],
    texts: list[str],
    positions: int = search_index.POSITIONS,
    sparse_max: int = search_index.SPARSE_MAX,
) -> list[tuple[str, int, bytes]]:
    """text_rows / text_postings equal the Python reference of the grouped texts."""
    assert native is not None
    fields = _texts_fields(offsets, texts)
    assert search_index.Builder._grouped(offsets, texts) == fields
    with (
        mock.patch.object(gram_keys, "POSITIONS", positions),
        mock.patch.object(codec, "SPARSE_MAX", sparse_max),
    ):
        expected_rows = _python_rows(fields)
        expected_postings = _python_postings(fields)
    rows = native.text_rows(offsets, texts, positions, sparse_max)
    assert rows == expected_rows
    assert native.text_postings(offsets, texts, positions) == expected_postings
    assert rows == native.rows(fields, positions, sparse_max)
    return rows


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    contacts=CONTACTS,
    positions=st.sampled_from([search_index.POSITIONS, 0, 1, 5]),
    sparse_max=st.sampled_from([search_index.SPARSE_MAX, 1, 3, 47]),
)
def test_native_rows_of_texts_equal_the_python_ones(
    contacts: list[tuple[int, str]], positions: int, sparse_max: int
) -> None:
    _check_texts([o for o, _ in contacts], [t for _, t in contacts], positions, sparse_max)


@needs_native
def test_native_rows_of_texts_cover_a_full_block() -> None:
    """Thousands of contacts (dense sets), shared and unique values, differing field
    counts, empty fields, astral characters, repeated offsets."""
    rng = random.Random(5)
    pool = ["田中", "鈴木", "", "𠀋𠀋𠀋𠀋", "abc", "x" * 90, "\ud800é", "東京都千代田区"]
    offsets = [*range(0, 6000), *range(0, 6000, 7), search_index.MASK]
    texts = [
        "\x1f".join([rng.choice(pool) for _ in range(rng.randint(1, 9))] + [f"{o:06d}@mail"])
        for o in offsets
    ]
    rows = _check_texts(offsets, texts)
    found = {key: (n, data) for key, n, data in rows}
    assert any(data[:1] == b"D" for _, data in found.values())
    assert "@ma" in found
    assert found["@ma"][0] == len(set(offsets))
    assert "" not in found
    assert _check_texts([], []) == []
    assert _check_texts([1, 2], ["", "\x1f\x1f"]) == []


@needs_native
@pytest.mark.parametrize(
    ("offsets", "texts", "error"),
    [
        ((1,), ["a"], TypeError),
        ([1], ("a",), TypeError),
        ([1, 2], ["a"], ValueError),
        ([1], [b"a"], TypeError),
        ([1.0], ["a"], TypeError),
        ([True], ["a"], TypeError),
        ([-1], ["a"], ValueError),
        ([65536], ["a"], ValueError),
        ([2**80], [""], ValueError),
    ],
)
def test_native_texts_reject_what_a_builder_never_passes(
    offsets: object, texts: object, error: type
) -> None:
    assert native is not None
    with pytest.raises(error):
        native.text_rows(offsets, texts, 64, 2048)  # type: ignore[arg-type]
    with pytest.raises(error):
        native.text_postings(offsets, texts, 64)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positions"):
        native.text_rows([], [], -1, 2048)
    with pytest.raises(ValueError, match="sparse_max"):
        native.text_rows([], [], 64, 0)


@pytest.mark.parametrize("use_native", [True, False], ids=["native", "python"])
@pytest.mark.parametrize("new_block", [True, False], ids=["new", "merged"])
def test_builder_writes_the_reference_rows(use_native: bool, new_block: bool) -> None:
    """A Builder fed by add and add_many (ids over several blocks, out of order,
    repeated) writes, per block run, the Python reference of the grouped texts."""
    if use_native and native is None:
        pytest.skip("the C extension is not built")
    rng = random.Random(9)
    pool = ["田中", "", "𠀋a", "abcd", "y" * 70]
    ids = [*range(65530, 65560), 3, 2, 2, *range(131072, 131072 + 3000), 70000]
    texts = ["\x1f".join(rng.choice(pool) for _ in range(rng.randint(1, 5))) for _ in ids]
    written: list[tuple[int, object]] = []
    with (
        mock.patch.object(writer, "_native", native if use_native else None),
        mock.patch.object(writer, "lock_tenant_writes"),
        mock.patch.object(writer, "fold"),
        mock.patch.object(writer, "_block_is_new", return_value=new_block),
        mock.patch.object(
            writer, "_insert_block", lambda _c, _t, block, rows: written.append((block, rows))
        ),
        mock.patch.object(
            writer,
            "_write_block",
            lambda _c, _t, block, deltas: written.append(
                (block, {g: sorted(set(d.adds)) for g, d in deltas.items()})
            ),
        ),
    ):
        builder = search_index.Builder(mock.Mock(), 1)
        builder.add(ids[0], texts[0])
        builder.add_many(ids[1:40], texts[1:40])
        builder.add_many([], [])
        with pytest.raises(ValueError, match="1 ids but 0 search texts"):
            builder.add_many([1], [])
        builder.add_many(iter(ids[40:]), iter(texts[40:]))
        assert builder.finish() == len(ids)
    runs: list[tuple[int, list[int], list[str]]] = []
    for contact_id, stored in zip(ids, texts, strict=True):
        block = contact_id >> search_index.BLOCK_BITS
        if not runs or runs[-1][0] != block:
            runs.append((block, [], []))
        runs[-1][1].append(contact_id & search_index.MASK)
        runs[-1][2].append(stored)
    expected = [
        (
            block,
            _python_rows(_texts_fields(offsets, block_texts))
            if new_block
            else _python_postings(_texts_fields(offsets, block_texts)),
        )
        for block, offsets, block_texts in runs
    ]
    assert [block for block, _ in written] == [0, 1, 0, 2, 1]
    assert written == expected


def test_the_extension_is_built_where_ci_is_set() -> None:
    if not os.environ.get("CI"):
        pytest.skip("enforced only where CI is set")
    importlib.import_module("provisioner.services.crm._postings")
    assert writer._native is not None


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


def _stored(
    world: World, tenant_id: int
) -> tuple[dict[int, str], dict[tuple[str, int], tuple[int, bytes]]]:
    with world.app.transaction() as ctx:
        ctx.enter_tenant(tenant_id)
        conn = ctx.session.connection()
        texts = {
            i: t
            for i, t in conn.execute(
                text("SELECT id, search_text FROM crm_contacts WHERE tenant_id = :t"),
                {"t": tenant_id},
            )
        }
        index = {
            (g, b): (n, bytes(d))
            for g, b, n, d in conn.execute(
                text("SELECT gram, block, n, data FROM crm_search_grams WHERE tenant_id = :t"),
                {"t": tenant_id},
            )
        }
    return texts, index


@needs_native
def test_seed_data_is_indexed_the_same_on_both_paths(world: World) -> None:
    """Seeded twice (a new block, then one merged into), natively and in Python: each
    tenant's stored index is the Python reference built from its stored texts."""
    for slug, use in (("native", native), ("python", None)):
        configured(world, slug)
        actor = world.actor(slug)
        with mock.patch.object(writer, "_native", use):
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
