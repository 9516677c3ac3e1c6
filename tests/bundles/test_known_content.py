"""The known-content path of ``read_bundle`` against the full path it stands beside.

A configuration this process validated is not parsed and validated again when it
arrives in another bundle (``payload._read_known``); only the payload around it is
checked. These tests read the same files with that memory and without it: the
outcome must be the same -- the same accepted bytes, data and digests, or the same
refusal.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.bundles import payload as bundle_payload
from provisioner.bundles.envelope import parse_envelope, sign_envelope
from provisioner.bundles.payload import Audience, Source, VerifiedBundle, build_bundle, read_bundle
from provisioner.bundles.signing import key_id
from provisioner.canonical import canonical_bytes, sha256_hex
from provisioner.clock import parse_instant
from provisioner.config.defaults import default_document
from provisioner.errors import ProvisionerError
from tests.security.mutations import Mutator
from tests.support import labelled


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"known-key-%d" % seed).digest())


SIGNER, OTHER, STRANGER = _key(1), _key(2), _key(3)
KNOWN = {key_id(k.public_key()): k.public_key() for k in (SIGNER, OTHER)}


def _config() -> dict[str, Any]:
    data = default_document().to_data()
    data["checkboxes"] = labelled(data, 1, "既知")["checkboxes"]
    return data


def _bundle(config: dict[str, Any], *, bundle_id: str | None = None) -> bytes:
    return build_bundle(
        config=config,
        source=Source(
            tenant="partner", name="Partner", config_version=2, config_digest="sha256:" + "0" * 64
        ),
        signer=SIGNER,
        created_at=parse_instant("2026-01-01T00:00:00Z"),
        expires_at=parse_instant("2026-01-02T00:00:00Z"),
        audience=Audience(copy_key="k7m2q9x4ab", binding="ab" * 32, tenant="client"),
        bundle_id=bundle_id,
    )


def _resigned(payload: bytes) -> bytes:
    """A bundle file of ``payload``, signed by the publisher's real key."""
    return sign_envelope(payload, SIGNER)


def _known(payload: bytes) -> dict[str, Any] | None:
    """The known-content path's answer for ``payload``, as read_bundle asks it."""
    span = bundle_payload._config_span(payload)
    assert span is not None
    digest = "sha256:" + sha256_hex(payload[span[0] : span[1]])
    return bundle_payload._read_known(payload, span, digest)


def _outcome(raw: bytes) -> tuple[Any, ...]:
    try:
        bundle = read_bundle(raw, KNOWN.get)
    except ProvisionerError as exc:
        return ("refused", type(exc).__name__, str(exc))
    return _accepted(bundle)


def _accepted(bundle: VerifiedBundle) -> tuple[Any, ...]:
    return (
        "accepted",
        bundle.payload,
        bundle.config,
        bundle.payload_bytes,
        bundle.key_id,
        bundle.config_json,
        bundle.config_span,
        bundle.payload_span,
        bundle.digest,
        bundle.config_digest,
    )


def _both(raw: bytes, genuine: bytes) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(outcome with the configuration known, outcome with nothing known)."""
    bundle_payload.forget_validated()
    read_bundle(genuine, KNOWN.get)  # validates the genuine configuration: known now
    known = _outcome(raw)
    bundle_payload.forget_validated()
    return known, _outcome(raw)


def test_known_content_is_read_without_validating_it_again() -> None:
    config = _config()
    bundle_payload.forget_validated()
    first = read_bundle(_bundle(config), KNOWN.get)
    assert first.config_digest in bundle_payload._VALIDATED
    second_raw = _bundle(config)  # another bundle id, the same configuration
    payload = parse_envelope(second_raw)[1]
    assert _known(payload) is not None  # the known path is taken
    second = read_bundle(second_raw, KNOWN.get)
    assert second.config is first.config  # the validated data itself, shared
    bundle_payload.forget_validated()
    assert _known(payload) is None
    assert _accepted(second) == _accepted(read_bundle(second_raw, KNOWN.get))


def test_forgetting_is_bounded() -> None:
    bundle_payload.forget_validated()
    for n in range(bundle_payload.VALIDATED_LIMIT + 3):
        data = default_document().to_data()
        data["checkboxes"] = labelled(data, 1, f"label {n}")["checkboxes"]
        read_bundle(_bundle(data), KNOWN.get)
    assert len(bundle_payload._VALIDATED) == bundle_payload.VALIDATED_LIMIT


def _header_variants(genuine: bytes) -> list[bytes]:
    """Re-signed payloads whose configuration bytes are the known ones and whose
    header around them is changed: each must be judged as the full path judges it."""
    payload = parse_envelope(genuine)[1]
    start, end = bundle_payload._config_span(payload) or (0, 0)
    head, config, tail = payload[:start], payload[start:end], payload[end:]
    data = {k: v for k, v in orjson.loads(payload).items() if k != "config"}
    variants = [
        head + config + tail,  # the genuine payload, re-signed
        head.replace(b'"format_version":1', b'"format_version":true') + config + tail,
        head.replace(b'"format_version":1', b'"format_version":2') + config + tail,
        head.replace(b'"bundle_id":"b_', b'"bundle_id":"x_') + config + tail,
        head.replace(b'"audience":{', b'"audience": {') + config + tail,  # not canonical
        head.replace(b'{"audience":', b'{"aaa":1,"audience":') + config + tail,  # unknown
        head + config + tail.replace(b'"created_at":"2026', b'"created_at":"2o26'),
        head + config + tail.replace(b'"publisher":{', b'"publisher":{"x":1,'),
        head + config + b',"config":{}' + tail,  # a second config member
        head + config + tail.replace(b"}", b',"zzz":{"config":1}}', 1),
        head + config + b"  " + tail,
        head + b" " + config + tail,
        head[:-1] + b" :" + config + tail,
        head + config + tail + b" ",
        head + config[:-1] + b',"x":1}' + tail,  # the configuration changed
        head.replace(b'"audience":{', b'"audience":{"config":{},', 1) + config + tail,
        b'{"config":' + config + b"," + head[1 : -len(b'"config":')] + tail[1:],
        canonical_bytes({**data, "config": 0}),
        canonical_bytes({**data, "config": {}}),
    ]
    return [_resigned(v) for v in variants]


def test_header_variants_are_judged_alike() -> None:
    genuine = _bundle(_config())
    for raw in _header_variants(genuine):
        known, unknown = _both(raw, genuine)
        assert known == unknown, parse_envelope(raw)[1][:300]


@pytest.mark.parametrize("seed", [3, 17])
def test_mutations_are_judged_alike(seed: int) -> None:
    """The mutation suite's hostile variants, read with the configuration known and
    not: the same outcome every time."""
    genuine = _bundle(_config())
    mutator = Mutator(genuine, signer=SIGNER, other=OTHER, stranger=STRANGER)
    for mutation in mutator.generate(seed=seed, count=150, skip=frozenset({"oversize"})):
        known, unknown = _both(mutation.raw, genuine)
        assert known == unknown, f"{mutation.kind} ({mutation.detail})"
