"""Attacks on signed bundles: tampering, replay, forgery, and hostile payloads.

One test per threat (the docstring names it). Hostile payloads are signed with
the source tenant's REAL key, so they pass signature verification and prove
the strict parser (not the signature) rejects them. Every refusal must store
nothing: no transfer, no new configuration version, the copy key still unused.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from provisioner.bundles.payload import Audience, Source, build_bundle
from provisioner.bundles.signing import generate_private_key, key_id, public_pem
from provisioner.canonical import canonical_bytes
from provisioner.clock import FrozenClock, format_instant
from provisioner.errors import BundleRejected, KeyRejected
from provisioner.security import copykey
from provisioner.services import actors, signing
from tests.security.craft import (
    counts,
    envelope_of,
    key_id_of,
    payload_bytes,
    payload_of,
    pem_of,
    resign,
    rewrap,
)
from tests.support import World, labelled


@dataclass
class Delivery:
    world: World
    key: str
    raw: bytes  # a genuine bundle from partner, bound to client's key

    @property
    def selector(self) -> str:
        return copykey.parse(self.key).selector

    def before(self) -> dict[str, Any]:
        return counts(self.world, "client")


@pytest.fixture
def delivery(world: World) -> Delivery:
    world.tenant("partner")
    world.tenant("client")
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    key = world.key("client")
    return Delivery(world, key, world.export("partner", key))


def _refused(
    d: Delivery, raw: bytes, error: type[Exception] | tuple[type[Exception], ...], *fragments: str
) -> str:
    """Receiving ``raw`` in client fails with ``error``; nothing is stored; returns message."""
    before = d.before()
    with pytest.raises(error) as info:
        d.world.receive("client", raw)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert d.before() == before
    return message


def _forge(d: Delivery, change: Any) -> bytes:
    """The genuine payload changed by ``change(data)``, canonical, re-signed by partner."""
    data = payload_of(d.raw)
    change(data)
    return resign(d.world, "partner", canonical_bytes(data))


def _forge_bytes(d: Delivery, old: bytes, new: bytes) -> bytes:
    """The genuine payload bytes with one substitution, re-signed by partner."""
    body = payload_bytes(d.raw)
    assert old in body
    return resign(d.world, "partner", body.replace(old, new, 1))


# --------------------------------------------------------------------------- integrity


def test_genuine_bundle_is_accepted(delivery: Delivery) -> None:
    """Control: the untampered bundle used by the attacks below is accepted."""
    transfer = delivery.world.receive("client", delivery.raw)
    assert delivery.world.transfer(transfer).status == "pending"


def test_tampered_payload_rejected(delivery: Delivery) -> None:
    """Threat: a bundle changed in transit (one label rewritten) keeps its old signature."""
    envelope = envelope_of(delivery.raw)
    body = payload_bytes(delivery.raw).replace("年賀状".encode(), "暑中見舞".encode())
    envelope["payload"] = base64.b64encode(body).decode()
    _refused(delivery, rewrap(envelope), BundleRejected, "does not verify")


def test_tampered_signature_rejected(delivery: Delivery) -> None:
    """Threat: a forged or corrupted signature (one bit flipped)."""
    envelope = envelope_of(delivery.raw)
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[10] ^= 0x01
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    _refused(delivery, rewrap(envelope), BundleRejected, "does not verify")


@pytest.mark.parametrize(
    "payload_type",
    [
        "application/json",
        "application/vnd.provisioner.bundle+json; v=2",
        "APPLICATION/VND.PROVISIONER.BUNDLE+JSON",
    ],
)
def test_tampered_payload_type_rejected(delivery: Delivery, payload_type: str) -> None:
    """Threat: payloadType swapped (type confusion: same bytes read as another kind)."""
    envelope = envelope_of(delivery.raw)
    envelope["payloadType"] = payload_type
    _refused(delivery, rewrap(envelope), BundleRejected, "payloadType")


def test_payload_type_signed_by_real_key_still_rejected(delivery: Delivery) -> None:
    """Threat: a validly signed envelope of a different payload type is not a bundle."""
    raw = resign(delivery.world, "partner", payload_bytes(delivery.raw), "application/json")
    _refused(delivery, raw, BundleRejected, "payloadType")


def test_signature_moved_to_other_key_id_rejected(delivery: Delivery) -> None:
    """Threat: the signature entry claims another tenant's key id (key substitution)."""
    delivery.world.tenant("other")
    envelope = envelope_of(delivery.raw)
    envelope["signatures"][0]["keyid"] = key_id_of(delivery.world, "other")
    _refused(delivery, rewrap(envelope), BundleRejected, "does not verify")


def test_envelope_signed_by_x_but_payload_names_publisher_y(delivery: Delivery) -> None:
    """Threat: signed by key X while the payload claims publisher key Y."""
    delivery.world.tenant("other")
    other = key_id_of(delivery.world, "other")
    forged = _forge(delivery, lambda d: d["publisher"].update(key_id=other))
    _refused(delivery, forged, BundleRejected, "names publisher key", other)


def test_payload_claiming_another_source_tenant_than_its_signer(world: World) -> None:
    """Threat: tenant mallory, holding a key of client, signs with HER key a payload that
    claims to come from 'partner'; client's inbox would show 'partner' as the source."""
    world.tenant("partner")
    world.tenant("mallory")
    world.tenant("client")
    raw = world.export("mallory", world.key("client"))
    data = payload_of(raw)
    data["source"]["tenant"] = "partner"
    data["source"]["name"] = "partner 株式会社"
    forged = resign(world, "mallory", canonical_bytes(data))
    before = counts(world, "client")
    with pytest.raises(BundleRejected):
        world.receive("client", forged)
    assert counts(world, "client") == before


# --------------------------------------------------------------------------- replay


def test_bundle_replayed_to_another_tenant_rejected(delivery: Delivery) -> None:
    """Threat: a bundle made for client (its copy key) is replayed into tenant 'other'."""
    world = delivery.world
    world.tenant("other")
    before = counts(world, "other")
    with pytest.raises(KeyRejected, match="made for tenant 'client'"):
        world.receive("other", delivery.raw)
    assert counts(world, "other") == before
    # the legitimate target can still receive it: the replay did not burn the key
    assert world.transfer(world.receive("client", delivery.raw)).status == "pending"


def test_bundle_with_audience_tenant_removed_replayed_to_another_tenant(delivery: Delivery) -> None:
    """Threat: the audience's tenant name is dropped (re-signed) to slip past the name check;
    the copy key itself still belongs to client."""
    world = delivery.world
    world.tenant("other")
    forged = _forge(delivery, lambda d: d["audience"].update(tenant=None))
    before = counts(world, "other")
    with pytest.raises(KeyRejected, match="another tenant"):
        world.receive("other", forged)
    assert counts(world, "other") == before


def test_bundle_replayed_twice_to_same_tenant_rejected(delivery: Delivery) -> None:
    """Threat: a delivered bundle is delivered again (replay to the same tenant)."""
    world = delivery.world
    world.receive("client", delivery.raw)
    _refused(delivery, delivery.raw, BundleRejected, "already received")


def test_bundle_replayed_after_approval_rejected(delivery: Delivery) -> None:
    """Threat: an old, already-applied bundle is replayed later to roll the target back."""
    world = delivery.world
    transfer = world.receive("client", delivery.raw)
    world.approve(transfer, "client-admin")
    world.set_config("client", labelled(world.config("client"), 1, "お歳暮"))
    _refused(delivery, delivery.raw, BundleRejected, "already received")


def test_expired_bundle_rejected(delivery: Delivery, clock: FrozenClock) -> None:
    """Threat: a bundle (and its key) delivered after its lifetime."""
    clock.advance(hours=24)
    _refused(delivery, delivery.raw, BundleRejected, "expired")


def test_bundle_with_past_expiry_rejected_while_key_is_valid(
    delivery: Delivery, clock: FrozenClock
) -> None:
    """Threat: an expired bundle (own expiry in the past) while its copy key is still valid."""
    past = format_instant(clock.now() - timedelta(seconds=1))
    forged = _forge(delivery, lambda d: d.update(expires_at=past))
    _refused(delivery, forged, BundleRejected, "expired")


# --------------------------------------------------------------------------- signers


def _foreign_bundle(world: World, key_text: str, target: str) -> tuple[bytes, Any]:
    """A bundle from a publisher in ANOTHER deployment (its key is unknown here)."""
    foreign = generate_private_key()
    key = copykey.parse(key_text)
    bundle_id = "b_" + "0" * 26
    source = world.config("partner")
    raw = build_bundle(
        config=source,
        source=Source(
            tenant="remote-partner",
            name="遠隔パートナー",
            config_version=1,
            config_digest="sha256:" + "0" * 64,
        ),
        signer=foreign,
        created_at=world.app.clock.now(),
        expires_at=world.app.clock.now() + timedelta(hours=1),
        audience=Audience(
            copy_key=key.selector,
            tenant=target,
            binding=key.binding(
                bundle_id,
                publisher_key_id=key_id(foreign.public_key()),
                source_tenant="remote-partner",
            ),
        ),
        bundle_id=bundle_id,
    )
    return raw, foreign


def test_bundle_from_another_deployment_rejected_without_its_public_key(delivery: Delivery) -> None:
    """Threat: a bundle signed by a key this deployment does not know (any attacker key)."""
    raw, _ = _foreign_bundle(delivery.world, delivery.key, "client")
    _refused(delivery, raw, BundleRejected, "unknown or untrusted key")


def test_bundle_from_another_deployment_accepted_with_public_key(delivery: Delivery) -> None:
    """Control: the same foreign bundle is accepted when its key is given (--public-key)."""
    raw, foreign = _foreign_bundle(delivery.world, delivery.key, "client")
    transfer = delivery.world.receive("client", raw, extra_keys=[foreign.public_key()])
    row = delivery.world.transfer(transfer)
    assert row.signer_key_id == key_id(foreign.public_key())
    assert row.source_tenant == "remote-partner"


def test_bundle_from_another_deployment_accepted_when_pinned(delivery: Delivery) -> None:
    """Control: the foreign bundle is accepted when client pinned the publisher's key."""
    world = delivery.world
    raw, foreign = _foreign_bundle(world, delivery.key, "client")
    with world.app.transaction() as ctx:
        signing.trust(
            ctx,
            actors.resolve(ctx, "client-admin", "client"),
            public_pem(foreign.public_key()).encode(),
            label="remote",
        )
    assert world.transfer(world.receive("client", raw)).status == "pending"


def test_untrusted_signer_rejected_when_publishers_pinned(delivery: Delivery) -> None:
    """Threat: once client pinned its publishers, a bundle from any other signer (even a
    tenant of this deployment, even offered with --public-key) is refused."""
    world = delivery.world
    world.tenant("trusted")
    pem = pem_of(world, "trusted")
    with world.app.transaction() as ctx:
        signing.trust(
            ctx, actors.resolve(ctx, "client-admin", "client"), pem, label="trusted partner"
        )
    with world.app.transaction() as ctx:
        partner_key = signing.public_key(ctx, actors.get_tenant(ctx, "partner").id)
    before = counts(world, "client")
    for extra in ([], [partner_key]):
        with pytest.raises(BundleRejected, match="untrusted"):
            world.receive("client", delivery.raw, extra_keys=extra)
    with pytest.raises(BundleRejected, match="untrusted"):
        world.send("partner", world.key("client"))
    assert counts(world, "client")["transfers"] == before["transfers"]


def test_pinned_publisher_accepted(delivery: Delivery) -> None:
    """Control: the pinned publisher's own bundle is still accepted."""
    world = delivery.world
    pem = pem_of(world, "partner")
    with world.app.transaction() as ctx:
        signing.trust(ctx, actors.resolve(ctx, "client-admin", "client"), pem, label="partner")
    assert world.transfer(world.receive("client", delivery.raw)).status == "pending"


# --------------------------------------------------------------------------- hostile payloads


def test_duplicate_json_keys_rejected(delivery: Delivery) -> None:
    """Threat: duplicate keys, read differently by different parsers (first vs last wins)."""
    forged = _forge_bytes(
        delivery, b'"format_version":1,', b'"format_version":1,"format_version":1,'
    )
    _refused(delivery, forged, BundleRejected, "duplicate key")


def test_duplicate_json_keys_with_different_values_rejected(delivery: Delivery) -> None:
    """Threat: a duplicated audience tenant name: one parser sees client, another 'other'."""
    forged = _forge_bytes(delivery, b'"tenant":"client"', b'"tenant":"other","tenant":"client"')
    _refused(delivery, forged, BundleRejected, "duplicate key", "tenant")


def test_oversize_bundle_rejected(delivery: Delivery) -> None:
    """Threat: resource exhaustion with a bundle over 16 MiB (rejected before parsing)."""
    data = payload_of(delivery.raw)
    data["config"]["settings"]["news"] = "x" * (16 * 1024 * 1024 + 1)
    forged = resign(delivery.world, "partner", canonical_bytes(data))
    _refused(delivery, forged, BundleRejected, "16 MiB")


def test_oversize_envelope_padding_rejected(delivery: Delivery) -> None:
    """Threat: a small valid bundle padded with 16 MiB of whitespace."""
    _refused(delivery, delivery.raw + b" " * (16 * 1024 * 1024), BundleRejected, "16 MiB")


@pytest.mark.parametrize("depth", [65, 200, 5000])
def test_deep_nesting_rejected(delivery: Delivery, depth: int) -> None:
    """Threat: stack exhaustion with JSON nested deeper than 64 levels."""
    # payload (1) > config (2) > settings (3) > news: lists from level 4 on
    lists = depth - 3
    nested = b"[" * lists + b"]" * lists
    forged = _forge_bytes(delivery, b'"news":""', b'"news":' + nested)
    _refused(delivery, forged, BundleRejected, "nested deeper than 64")


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_unknown_format_version_rejected(delivery: Delivery, version: Any) -> None:
    """Threat: a payload in a format this version does not understand (downgrade/upgrade
    confusion) is refused, not read as version 1."""
    forged = _forge(delivery, lambda d: d.update(format_version=version))
    _refused(delivery, forged, BundleRejected, "format version")


def test_unknown_format_rejected(delivery: Delivery) -> None:
    """Threat: another signed JSON document (same key) passed off as a bundle."""
    forged = _forge(delivery, lambda d: d.update(format="provisioner.other"))
    _refused(delivery, forged, BundleRejected, "format")


@pytest.mark.parametrize(
    "where", ["top", "source", "audience", "publisher", "config", "section_item"]
)
def test_unknown_fields_in_payload_rejected(delivery: Delivery, where: str) -> None:
    """Threat: smuggled fields that a later version (or another reader) would act on."""

    def change(data: dict[str, Any]) -> None:
        if where == "top":
            data["auto_apply"] = True
        elif where == "section_item":
            data["config"]["checkboxes"][0]["auto_apply"] = True
        elif where == "config":
            data["config"]["auto_apply"] = True
        else:
            data[where]["auto_apply"] = True

    forged = _forge(delivery, change)
    _refused(delivery, forged, BundleRejected, "auto_apply")


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_rejected(delivery: Delivery, constant: bytes) -> None:
    """Threat: non-JSON numbers (NaN/Infinity) that some parsers accept and others do not."""
    forged = _forge_bytes(delivery, b'"recent_customers":10', b'"recent_customers":' + constant)
    _refused(delivery, forged, BundleRejected, constant.decode().lstrip("-"))


def test_integer_beyond_64_bits_rejected(delivery: Delivery) -> None:
    """Threat: numbers some parsers read exactly and others round (or crash on)."""
    forged = _forge_bytes(
        delivery, b'"recent_customers":10', b'"recent_customers":99999999999999999999999'
    )
    _refused(delivery, forged, BundleRejected)


def test_lone_surrogate_escape_rejected(delivery: Delivery) -> None:
    """Threat: invalid Unicode (a lone UTF-16 surrogate) read differently by each parser."""
    forged = _forge_bytes(delivery, b'"news":""', b'"news":"\\ud800"')
    _refused(delivery, forged, BundleRejected)


def test_duplicate_keys_in_envelope_rejected(delivery: Delivery) -> None:
    """Threat: an envelope with two payloads (the verifier checks one, the reader uses the
    other)."""
    envelope = envelope_of(delivery.raw)
    other = base64.b64encode(
        payload_bytes(delivery.raw).replace("年賀状".encode(), "暑中見舞".encode())
    ).decode()
    first = b'{"payload":"' + other.encode() + b'",'
    body = rewrap(envelope).replace(b"{", first, 1)
    _refused(delivery, body, BundleRejected, "duplicate key")


def test_unbound_bundle_rejected_without_pinned_publisher(delivery: Delivery) -> None:
    """Threat: pushing a configuration into a tenant without its admin's copy key (an
    unbound bundle), merely because the signer is a tenant of this deployment."""
    raw = delivery.world.export("partner")  # no --key: no audience
    _refused(delivery, raw, KeyRejected, "no copy key")


def test_non_canonical_payload_rejected(delivery: Delivery) -> None:
    """Threat: a payload not in RFC 8785 form (whitespace), so its digest is not its identity."""
    forged = _forge_bytes(delivery, b'"format_version":1', b'"format_version": 1')
    _refused(delivery, forged, BundleRejected, "canonical")


def test_invalid_configuration_in_signed_payload_rejected(delivery: Delivery) -> None:
    """Threat: a validly signed bundle whose configuration breaks the schema."""
    forged = _forge(delivery, lambda d: d["config"]["checkboxes"][0].update(index=99))
    _refused(delivery, forged, BundleRejected, "configuration")


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"{}",
        b'{"payload":"!!","payloadType":"x","signatures":[]}',
    ],
)
def test_garbage_bundle_rejected(delivery: Delivery, garbage: bytes) -> None:
    """Threat: malformed input must be refused with BundleRejected, never a crash."""
    _refused(delivery, garbage, BundleRejected)


def test_intercepted_key_binding_lifted_into_another_signers_bundle(delivery: Delivery) -> None:
    """Threat: mallory intercepts partner's bundle file in transit, copies its bundle_id and
    audience (the key proof) into her own configuration signed with HER tenant key, and
    hands that file to client instead: the key proof must not transfer to another signer."""
    world = delivery.world
    world.tenant("mallory")
    world.set_config("mallory", labelled(world.config("mallory"), 1, "悪意"))
    genuine = payload_of(delivery.raw)
    forged = payload_of(world.export("mallory"))
    forged["bundle_id"] = genuine["bundle_id"]
    forged["audience"] = genuine["audience"]
    raw = resign(world, "mallory", canonical_bytes(forged))
    _refused(delivery, raw, (KeyRejected, BundleRejected))
