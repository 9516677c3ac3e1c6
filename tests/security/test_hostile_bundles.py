"""Hostile bundles found by the outside attack run (issue 11): each is refused with a
typed error, the same way by ``receive`` and by ``bundle verify``, and stores nothing.

Every payload here is signed with the source tenant's REAL key, so the refusal
comes from strict reading, not from the signature.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provisioner.bundles.envelope import pae
from provisioner.canonical import canonical_bytes
from provisioner.cli.main import cli
from provisioner.errors import BundleRejected
from provisioner.services import actors, transfers
from tests.security.craft import (
    counts,
    envelope_of,
    key_id_of,
    payload_bytes,
    payload_of,
    pem_of,
    resign,
    rewrap,
    signer_of,
)
from tests.support import World, labelled


@pytest.fixture
def world2(world: World) -> tuple[World, str, bytes]:
    """partner sends client a genuine bundle (``raw``), bound to client's copy key."""
    world.tenant("partner")
    world.tenant("client")
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    key = world.key("client")
    return world, key, world.export("partner", key)


def _verify_cli(world: World, raw: bytes, tmp_path: Path) -> tuple[int, str]:
    """``provisioner bundle verify FILE --public-key partner.pem``: (exit code, stderr)."""
    bundle = tmp_path / "hostile.bundle"
    bundle.write_bytes(raw)
    pem = tmp_path / "partner.pem"
    pem.write_bytes(pem_of(world, "partner"))
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            f"sqlite:///{tmp_path / 'unused.db'}",
            "bundle",
            "verify",
            str(bundle),
            "--public-key",
            str(pem),
        ],
        catch_exceptions=True,
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"bundle verify crashed: {result.exception!r}")
    return result.exit_code, result.stderr


def _refused_everywhere(world: World, raw: bytes, tmp_path: Path, *fragments: str) -> str:
    """Receive refuses ``raw`` with BundleRejected storing nothing; ``bundle verify`` too."""
    before = counts(world, "client")
    with pytest.raises(BundleRejected) as info:
        world.receive("client", raw)
    message = info.value.diagnostics()
    for fragment in fragments:
        assert fragment in message, message
    assert counts(world, "client") == before
    code, stderr = _verify_cli(world, raw, tmp_path)
    assert code == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "internal error" not in stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
    return message


def _forge(world: World, raw: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    data = payload_of(raw)
    change(data)
    return resign(world, "partner", canonical_bytes(data))


def _forge_bytes(world: World, raw: bytes, old: bytes, new: bytes) -> bytes:
    body = payload_bytes(raw)
    assert old in body
    return resign(world, "partner", body.replace(old, new, 1))


# --------------------------------------------------------------------------- key ids


def test_lone_surrogate_keyid_is_refused(world2: tuple[World, str, bytes], tmp_path: Path) -> None:
    """Threat: ``"keyid": "\\ud800"`` crashed receive and verify with UnicodeEncodeError."""
    world, _, raw = world2
    envelope = envelope_of(raw)
    envelope["signatures"][0]["keyid"] = "\ud800"
    hostile = rewrap(envelope)  # json.dumps writes the escape \\ud800
    assert b"\\ud800" in hostile
    _refused_everywhere(world, hostile, tmp_path, "keyid")


def test_huge_keyid_is_quoted_bounded(world2: tuple[World, str, bytes], tmp_path: Path) -> None:
    """Threat: a 100,000-character keyid echoed in full in the error message."""
    world, _, raw = world2
    envelope = envelope_of(raw)
    envelope["signatures"][0]["keyid"] = "k" * 100_000
    message = _refused_everywhere(world, rewrap(envelope), tmp_path, "100,000 characters")
    assert len(message) < 500


@pytest.mark.parametrize("where", ["field", "payloadType"])
def test_huge_envelope_text_is_quoted_bounded(
    world2: tuple[World, str, bytes], tmp_path: Path, where: str
) -> None:
    """Threat: a 100,000-character unknown field name or payloadType echoed in full."""
    world, _, raw = world2
    envelope = envelope_of(raw)
    if where == "field":
        envelope["x" * 100_000] = 1
    else:
        envelope["payloadType"] = "t" * 100_000
    message = _refused_everywhere(world, rewrap(envelope), tmp_path, "100,000 characters")
    assert len(message) < 500


def test_huge_payload_member_name_is_bounded(
    world2: tuple[World, str, bytes], tmp_path: Path
) -> None:
    """Threat: a validly signed payload with a 100,000-character member name."""
    world, _, raw = world2
    message = _refused_everywhere(
        world,
        _forge(world, raw, lambda d: d["source"].update({"n" * 100_000: 1})),
        tmp_path,
        "100,000 characters",
    )
    assert len(message) < 800


# --------------------------------------------------------------------------- instants


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("expires_at", "2027-02-30T00:00:00Z"),  # matches the pattern, is no date
        ("created_at", "9999-99-99T99:99:99Z"),
        ("created_at", "2026-13-01T00:00:00Z"),
        ("expires_at", "２０２７-０１-０１T００:００:００Z"),  # fullwidth digits
        ("created_at", "２０２６-１２-０７T００:００:００Z"),
    ],
)
def test_instants_are_parsed_strictly(
    world2: tuple[World, str, bytes], tmp_path: Path, member: str, value: str
) -> None:
    """Threat: instants that match ``\\d`` patterns but are no date (or not ASCII)."""
    world, _, raw = world2
    _refused_everywhere(
        world, _forge(world, raw, lambda d: d.update({member: value})), tmp_path, member
    )


# --------------------------------------------------------------------------- integers


@pytest.mark.parametrize(
    ("version", "said"),
    [
        (2**31, "config_version"),
        (2**53 - 1, "config_version"),
        (2**63, "config_version"),
        (2**64 + 1, "integer beyond 64 bits"),
    ],
)
def test_config_version_bounded_to_what_every_backend_stores(
    world2: tuple[World, str, bytes], tmp_path: Path, version: int, said: str
) -> None:
    """Threat: 2^63 overflowed SQLite; > 2^31-1 gave a misleading database error on PostgreSQL."""
    world, _, raw = world2
    body = payload_bytes(raw)
    current = payload_of(raw)["source"]["config_version"]
    hostile = _forge_bytes(
        world, raw, b'"config_version":%d' % current, b'"config_version":%d' % version
    )
    assert body != payload_bytes(hostile)
    _refused_everywhere(world, hostile, tmp_path, said)


def test_largest_postgres_integer_config_version_is_accepted(
    world2: tuple[World, str, bytes],
) -> None:
    """Control: 2^31-1, the PostgreSQL INTEGER maximum, is a valid version and is stored."""
    world, _, raw = world2
    hostile = _forge(world, raw, lambda d: d["source"].update({"config_version": 2**31 - 1}))
    transfer = world.receive("client", hostile)
    assert world.transfer(transfer).source_version == 2**31 - 1


# --------------------------------------------------------------------------- signatures


def _two_signatures(world: World, raw: bytes, order: tuple[str, str]) -> bytes:
    """``raw``'s payload signed by both tenants, entries in ``order``."""
    body = payload_bytes(raw)
    envelope = envelope_of(raw)
    message = pae(envelope["payloadType"], body)
    envelope["signatures"] = [
        {
            "keyid": key_id_of(world, slug),
            "sig": base64.b64encode(signer_of(world, slug).sign(message)).decode(),
        }
        for slug in order
    ]
    return rewrap(envelope)


def test_two_valid_signatures_are_decided_by_key_not_order(
    world2: tuple[World, str, bytes],
) -> None:
    """Threat: with two valid signatures the result depended on their order in the envelope."""
    world, _, raw = world2
    world.tenant("other")
    partner = key_id_of(world, "partner")
    signers = set()
    for order in (("partner", "other"), ("other", "partner")):
        hostile = _two_signatures(world, raw, order)
        with world.app.transaction() as ctx:  # the receive check, without storing
            actor = actors.resolve(ctx, "client-admin", "client")
            transfer = transfers.receive(ctx, actor, hostile)
            signers.add(transfer.signer_key_id)
            ctx.session.rollback()
    assert signers == {partner}  # the publisher the payload names, in either order


# --------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_envelope_not_in_utf8_is_refused(
    world2: tuple[World, str, bytes], tmp_path: Path, encoding: str
) -> None:
    """Threat: the format says UTF-8; a UTF-16 envelope (or one with a BOM) was accepted."""
    world, _, raw = world2
    hostile = raw.decode("utf-8").encode(encoding)
    with pytest.raises(BundleRejected):
        world.receive("client", hostile)
    code, stderr = _verify_cli(world, hostile, tmp_path)
    assert code == 1, stderr
    assert stderr.startswith("error: "), stderr
