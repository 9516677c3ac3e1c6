"""How a received bundle is stored: once, and given back byte for byte.

A bundle as an exporter writes it carries its configuration verbatim in the
payload, and the payload verbatim (base64) in the file: the transfer row keeps
the configuration (``incoming``) and only the rest of the file, with a frame to
put it back together. Any other file is kept whole. Either way
``transfers.bundle_file`` returns exactly the bytes that were received.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, inspect, select, text

from provisioner.bundles import envelope
from provisioner.bundles.envelope import verify_envelope
from provisioner.bundles.payload import read_bundle
from provisioner.bundles.signing import key_id
from provisioner.canonical import canonical_bytes
from provisioner.db.models import Transfer
from provisioner.errors import BundleRejected
from provisioner.services import documents, transfers
from tests.security.craft import envelope_of, payload_of, resign, signer_of
from tests.support import World, labelled

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.fixture
def partner(world: World) -> World:
    world.tenant("partner")
    world.tenant("client")
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    return world


def _file(world: World, row: Transfer) -> bytes:
    with world.app.transaction() as ctx:
        return transfers.bundle_file(ctx.session, row)


def _incoming(world: World, row: Transfer) -> bytes:
    """The configuration sections as stored (once per distinct content)."""
    with world.app.transaction() as ctx:
        return transfers.incoming_bytes(ctx.session, row)


def _kept(world: World, row: Transfer) -> tuple[bytes, dict[str, Any] | None]:
    """The file as kept without its configuration, and its frame (None: the file whole):
    a document stored once per distinct content, named by the transfer."""
    assert row.envelope == b""
    assert row.payload_frame is not None
    with world.app.transaction() as ctx:
        kept = orjson.loads(documents.body(ctx.session, row.payload_frame["file"]))
    return base64.b64decode(kept["file"]), kept["frame"]


def _received(world: World, raw: bytes) -> tuple[int, bytes]:
    transfer_id = world.receive("client", raw)
    return transfer_id, _file(world, world.transfer(transfer_id))


def test_an_exported_bundle_is_stored_once_and_given_back_exactly(partner: World) -> None:
    raw = partner.export("partner", partner.key("client"))
    transfer_id, stored_file = _received(partner, raw)
    row = partner.transfer(transfer_id)
    kept, frame = _kept(partner, row)
    assert frame is not None
    assert len(kept) < 1024 < len(_incoming(partner, row))  # not repeated
    assert row.envelope_bytes == len(raw)  # disk usage still counts the whole file
    assert stored_file == raw
    public = signer_of(partner, "partner").public_key()  # the rebuilt file verifies
    assert read_bundle(stored_file, {key_id(public): public}.get).config_json == _incoming(
        partner, row
    )
    decision = partner.approve(transfer_id, "client-admin")
    assert decision.outcome == "applied"
    assert partner.config("client") == partner.config("partner")


def test_a_reformatted_envelope_is_stored_whole(partner: World) -> None:
    raw = partner.export("partner", partner.key("client"))
    spaced = json.dumps(envelope_of(raw), indent=2).encode()  # same payload, same signature
    transfer_id, stored_file = _received(partner, spaced)
    row = partner.transfer(transfer_id)
    assert _kept(partner, row) == (spaced, None)
    assert stored_file == spaced


def test_an_escaped_payload_string_is_stored_whole(partner: World) -> None:
    raw = partner.export("partner", partner.key("client"))
    text_ = envelope_of(raw)["payload"]
    escaped = raw.replace(
        b'"payload":"' + text_[0].encode(), b'"payload":"\\u%04x' % ord(text_[0]), 1
    )
    assert escaped != raw
    assert envelope_of(escaped) == envelope_of(raw)
    transfer_id, stored_file = _received(partner, escaped)
    assert _kept(partner, partner.transfer(transfer_id))[1] is None
    assert stored_file == escaped


def test_base64_with_stray_bits_in_its_last_group_is_stored_whole(partner: World) -> None:
    """Strict base64 ignores the unused low bits of a padded last group: re-encoding
    would not give the received text back, so the file is kept as it came."""
    for extra in range(3):  # a payload whose length is not a multiple of 3 ends in padding
        partner.set_config("partner", labelled(partner.config("partner"), 2, "暑" + "x" * extra))
        raw = partner.export("partner", partner.key("client"))
        text_ = envelope_of(raw)["payload"]
        if text_.endswith("="):
            break
    last = text_.rstrip("=")[-1]
    odd = text_.rstrip("=")[:-1] + _B64[_B64.index(last) ^ 1] + "=" * text_.count("=")
    assert base64.b64decode(odd) == base64.b64decode(text_)
    changed = raw.replace(text_.encode(), odd.encode())
    transfer_id, stored_file = _received(partner, changed)
    assert _kept(partner, partner.transfer(transfer_id))[1] is None
    assert stored_file == changed


def test_a_payload_without_its_defaults_is_stored_whole(partner: World) -> None:
    """Valid but terser than an exporter writes it (defaults left out): the stored
    configuration is the normalised one, which is not a slice of the payload."""
    raw = partner.export("partner", partner.key("client"))
    data = payload_of(raw)
    for box in data["config"]["checkboxes"]:
        box.pop("enabled")  # defaults to true
    terse = resign(partner, "partner", canonical_bytes(data))
    transfer_id, stored_file = _received(partner, terse)
    row = partner.transfer(transfer_id)
    assert _kept(partner, row)[1] is None
    assert stored_file == terse
    assert all(box["enabled"] for box in orjson.loads(_incoming(partner, row))["checkboxes"])


def test_the_payload_span_is_only_reported_when_it_is_verbatim(partner: World) -> None:
    raw = partner.export("partner", partner.key("client"))
    public = signer_of(partner, "partner").public_key()
    verified = verify_envelope(raw, {key_id(public): public}.get)
    assert verified.payload_span is not None
    start, end = verified.payload_span
    assert raw[start:end] == base64.b64encode(verified.payload)
    spaced = json.dumps(envelope_of(raw), indent=1).encode()
    assert verify_envelope(spaced, {key_id(public): public}.get).payload_span is None


def test_disk_usage_sums_sizes_from_covering_indexes(partner: World) -> None:
    """SQLite keeps the size columns after the megabyte-sized documents in each row:
    summing them must read the indexes, never walk the rows' overflow pages."""
    engine = partner.app.engine
    indexes = {
        table: {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes(table)}
        for table in ("transfers", "config_versions")
    }
    assert ("tenant_id", "envelope_bytes") in indexes["transfers"]
    assert ("tenant_id", "size_bytes") in indexes["config_versions"]
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        for table, column in (("transfers", "envelope_bytes"), ("config_versions", "size_bytes")):
            plan = " ".join(
                str(row[-1])
                for row in conn.execute(
                    text(
                        f"EXPLAIN QUERY PLAN SELECT sum({column}) FROM {table} WHERE tenant_id = 1"
                    )
                )
            )
            assert "COVERING INDEX" in plan, plan


def _strict(text_: str) -> bytes | None:
    try:
        return binascii.a2b_base64(text_, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def _fast(text_: str) -> bytes | None:
    try:
        return envelope._b64(text_, "payload")
    except BundleRejected:
        return None


@given(
    st.binary(max_size=40),
    st.integers(min_value=0, max_value=80),
    st.sampled_from(["", "=", "==", "A", "\n", " ", "é", "-", "_", "\\", "AAAA"]),
    st.sampled_from(["insert", "replace", "append", "strip", "none"]),
)
def test_payload_base64_is_read_exactly_as_strict_binascii_reads_it(
    data: bytes, where: int, extra: str, how: str
) -> None:
    """The SIMD decoder changes the speed of decoding, never what is accepted or how."""
    text_ = base64.b64encode(data).decode("ascii")
    where = min(where, len(text_))
    if how == "insert":
        text_ = text_[:where] + extra + text_[where:]
    elif how == "replace" and text_:
        text_ = text_[:where] + extra + text_[where + 1 :]
    elif how == "append":
        text_ += extra
    elif how == "strip":
        text_ = text_.rstrip("=")
    assert _fast(text_) == _strict(text_)


def test_stray_bits_are_read_as_strict_binascii_reads_them() -> None:
    for text_ in ("QR==", "QUJ=", "QQ==", "QUI=", "QUJD"):
        assert _fast(text_) == _strict(text_) is not None


def test_a_canonical_envelope_is_read_in_one_pass_and_anything_else_strictly() -> None:
    from provisioner.bundles import strict_json

    assert strict_json.loads_strict_fast(b'{"a":[1,"x"]}\n') == ({"a": [1, "x"]}, True)
    assert strict_json.loads_strict_fast(b'{"a": [1, "x"]}') == ({"a": [1, "x"]}, False)
    for hostile, message in (
        (b'{"a":1,"a":1}', "duplicate key"),
        (b'{"a":NaN}', "NaN"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "deeper than 64"),
    ):
        with pytest.raises(BundleRejected, match=message):
            strict_json.loads_strict_fast(hostile, what="bundle envelope")


def test_the_plan_names_the_digest_of_the_stored_configuration(partner: World) -> None:
    row = partner.transfer(
        partner.receive("client", partner.export("partner", partner.key("client")))
    )
    assert (
        row.plan["incoming_digest"]
        == "sha256:" + hashlib.sha256(_incoming(partner, row)).hexdigest()
    )
    assert (
        row.payload_digest
        == "sha256:"
        + hashlib.sha256(base64.b64decode(envelope_of(_file(partner, row))["payload"])).hexdigest()
    )


def test_a_concurrent_duplicate_insert_is_refused_and_the_transaction_goes_on(
    partner: World,
) -> None:
    """The replay check's race: a row for the bundle appeared after it was checked. The
    insert inserts nothing and says so; the transaction is not broken by a key error."""
    raw = partner.export("partner", partner.key("client"))
    first = partner.transfer(partner.receive("client", raw))
    values = {c.key: getattr(first, c.key) for c in Transfer.__table__.columns if c.key != "id"}
    with partner.app.transaction() as ctx:
        ctx.enter_tenant(first.tenant_id)  # the client's rows, as the receive writes them
        with pytest.raises(BundleRejected, match="was already received"):
            transfers._insert_once(ctx, values)
        assert ctx.session.scalar(select(func.count()).select_from(Transfer)) == 1
        second = transfers._insert_once(ctx, {**values, "bundle_id": "b_" + "x" * 26})
        assert second.id != first.id
    assert _file(partner, partner.transfer(second.id)) == raw
