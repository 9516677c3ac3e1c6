"""bundles/envelope.py: DSSE envelopes, signed and verified (Ed25519), parsed strictly.

The public behaviour: PAE as DSSE defines it, a signed envelope that verifies
with the signer's key and with no other, strict refusal of anything malformed.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from provisioner.bundles.envelope import (
    MAX_SIGNATURES,
    PAYLOAD_TYPE,
    pae,
    parse_envelope,
    sign_envelope,
    verify_envelope,
)
from provisioner.bundles.signing import generate_private_key, key_id
from provisioner.canonical import canonical_bytes
from provisioner.errors import BundleRejected

KEY = generate_private_key()
OTHER = generate_private_key()
PAYLOAD = '{"a":1,"名前":"田中"}'.encode()


def _known(*keys: Any) -> Any:
    table = {key_id(k.public_key()): k.public_key() for k in keys}
    return table.get


def _envelope(**changes: Any) -> bytes:
    data = json.loads(sign_envelope(PAYLOAD, KEY))
    data.update(changes)
    return canonical_bytes(data) + b"\n"


def test_pae_is_the_dsse_encoding() -> None:
    assert pae("t", b"body") == b"DSSEv1 1 t 4 body"
    assert pae("型", b"") == b"DSSEv1 3 \xe5\x9e\x8b 0 "


def test_a_signed_envelope_verifies_with_its_key() -> None:
    raw = sign_envelope(PAYLOAD, KEY)
    assert raw.endswith(b"\n")
    verified = verify_envelope(raw, _known(KEY))
    assert verified.payload == PAYLOAD
    assert verified.payload_type == PAYLOAD_TYPE
    assert verified.key_id == key_id(KEY.public_key())
    start, end = verified.payload_span or (0, 0)
    assert raw[start:end] == base64.b64encode(PAYLOAD)
    assert parse_envelope(raw) == (
        PAYLOAD_TYPE,
        PAYLOAD,
        [(key_id(KEY.public_key()), KEY.sign(pae(PAYLOAD_TYPE, PAYLOAD)))],
    )


def test_an_unknown_key_and_a_wrong_key_are_refused() -> None:
    raw = sign_envelope(PAYLOAD, KEY)
    with pytest.raises(BundleRejected, match="unknown or untrusted key"):
        verify_envelope(raw, _known(OTHER))
    mine = key_id(KEY.public_key())
    with pytest.raises(BundleRejected, match="does not verify"):  # the id, another key
        verify_envelope(raw, {mine: OTHER.public_key()}.get)


def test_an_altered_payload_does_not_verify() -> None:
    altered = base64.b64encode(PAYLOAD.replace(b"1", b"2")).decode()
    with pytest.raises(BundleRejected, match="does not verify"):
        verify_envelope(_envelope(payload=altered), _known(KEY))


def test_any_signature_of_a_known_key_is_enough() -> None:
    data = json.loads(sign_envelope(PAYLOAD, KEY))
    other = json.loads(sign_envelope(PAYLOAD, OTHER))["signatures"]
    raw = canonical_bytes({**data, "signatures": other + data["signatures"]})
    assert verify_envelope(raw, _known(KEY)).key_id == key_id(KEY.public_key())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1]", "not a DSSE envelope"),
        (b"not json", "not a DSSE envelope"),
        (_envelope(extra=1), "unknown field"),
        (_envelope(payloadType="text/plain"), "payloadType"),
        (_envelope(payload="@@@"), "payload is not valid base64"),
        (_envelope(payload=1), "payload must be a base64 string"),
        (_envelope(signatures=[]), "no signature"),
        (_envelope(signatures=[{"keyid": "k", "sig": "AA=="}] * (MAX_SIGNATURES + 1)), "more than"),
        (_envelope(signatures=[{"keyid": "k", "sig": "AA==", "x": 1}]), "only 'keyid' and 'sig'"),
        (_envelope(signatures=[{"keyid": "", "sig": "AA=="}]), "no keyid"),
        (_envelope(signatures=[{"keyid": "k", "sig": "A"}]), "signature is not valid base64"),
    ],
    ids=[
        "array",
        "not-json",
        "extra-field",
        "payload-type",
        "bad-base64",
        "payload-number",
        "no-signature",
        "too-many-signatures",
        "signature-field",
        "empty-keyid",
        "bad-signature-base64",
    ],
)
def test_malformed_envelopes_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(BundleRejected, match=message):
        verify_envelope(raw, _known(KEY))


def test_a_duplicate_member_is_refused() -> None:
    raw = sign_envelope(PAYLOAD, KEY)
    doubled = raw.replace(b'{"payload"', b'{"payloadType":"x","payload"', 1)
    with pytest.raises(BundleRejected, match="duplicate"):
        parse_envelope(doubled)


def test_a_non_canonical_but_valid_envelope_still_verifies() -> None:
    data = json.loads(sign_envelope(PAYLOAD, KEY))
    unsorted = json.dumps(
        {"signatures": data["signatures"], "payloadType": PAYLOAD_TYPE, "payload": data["payload"]},
        separators=(",", ":"),
    ).encode()
    verified = verify_envelope(unsorted, _known(KEY))
    assert verified.payload == PAYLOAD
    start, end = verified.payload_span or (0, 0)
    assert unsorted[start:end] == base64.b64encode(PAYLOAD)
    spaced = json.dumps(data, indent=2).encode()
    verified = verify_envelope(spaced, _known(KEY))
    assert verified.payload == PAYLOAD
    assert verified.payload_span is None  # not written as "payload":"<base64>"
