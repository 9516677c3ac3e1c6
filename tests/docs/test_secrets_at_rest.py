"""docs/threat-model.md, "Database read leak": what a copy of the database gives away.

The whole database is dumped (every table of ``Base.metadata``, every column)
after tenants, a copy key and a delivery exist, and searched for the secrets
that must not be there: the copy key's text and secret, and any tenant's raw
Ed25519 private key. The sealed private keys must not open without the master
key, nor when moved onto another tenant's row.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import select

from provisioner.bundles.signing import private_raw
from provisioner.db import tenancy
from provisioner.db.models import CopyKeyRow, SigningKey, Tenant
from provisioner.db.schema import metadata
from provisioner.errors import ConfigurationError
from provisioner.security import copykey
from provisioner.security.keystore import MasterKey, Sealed
from provisioner.services import signing
from tests.support import World, labelled


def _dump(world: World) -> list[Any]:
    """Every value of every row of every table."""
    values: list[Any] = []
    with world.app.engine.connect() as conn:
        tenancy.set_operator(conn, "read")  # every tenant's rows
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                values.extend(row)
    return values


def _contains(values: list[Any], needle: bytes) -> bool:
    text = needle.decode("latin-1")
    hexed = needle.hex()
    for value in values:
        if isinstance(value, bytes | bytearray | memoryview):
            blob = bytes(value)
            if needle in blob or hexed.encode() in blob:
                return True
        elif value is not None:
            shown = str(value)
            if text in shown or hexed in shown.lower():
                return True
    return False


@pytest.fixture
def leaked(world: World) -> tuple[World, str, list[bytes]]:
    world.tenant("partner")
    world.tenant("client")
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    world.send("partner", world.key("client"))  # a used key, a transfer, audit events
    live_key = world.key("client")  # and a live one
    with world.app.transaction() as ctx, ctx.operator("read"):  # every tenant's keys
        privates = [
            private_raw(signing.signer(ctx, tenant_id))
            for tenant_id in ctx.session.scalars(select(Tenant.id))
        ]
    return world, live_key, privates


def test_database_holds_no_copy_key_secret(leaked: tuple[World, str, list[bytes]]) -> None:
    world, key_text, _ = leaked
    key = copykey.parse(key_text)
    values = _dump(world)
    assert _contains(values, key.selector.encode())  # the search does find what is there
    assert not _contains(values, key_text.encode())
    assert not _contains(values, key.secret.encode())
    with world.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        row = ctx.session.scalar(select(CopyKeyRow).where(CopyKeyRow.selector == key.selector))
        assert row is not None
        assert (
            row.secret_hash
            == hashlib.sha256(b"provisioner/copy-key|" + key.secret.encode()).digest()
        )


def test_database_holds_no_private_signing_key(leaked: tuple[World, str, list[bytes]]) -> None:
    world, _, privates = leaked
    assert len(privates) == 2
    values = _dump(world)
    with world.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        public = ctx.session.scalars(select(SigningKey.public_key)).first()
    assert public is not None
    assert _contains(values, public)  # the search does find bytes that are there
    for private in privates:
        assert len(private) == 32
        assert not _contains(values, private)


def test_sealed_keys_need_the_master_key_and_their_own_row(
    leaked: tuple[World, str, list[bytes]],
) -> None:
    world, _, _ = leaked
    with world.app.transaction() as ctx, ctx.operator("read"):  # the test inspects
        rows = list(ctx.session.scalars(select(SigningKey).order_by(SigningKey.id)))
    first, second = rows[0], rows[1]
    sealed = Sealed(first.wrapped_key, first.ciphertext)
    own_aad = f"tenant:{first.tenant_id}|key:{first.key_id}".encode()
    other_aad = f"tenant:{second.tenant_id}|key:{second.key_id}".encode()
    assert len(world.app.master_key.open(sealed, aad=own_aad)) == 32
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        MasterKey(bytes(32)).open(sealed, aad=own_aad)
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        world.app.master_key.open(sealed, aad=other_aad)
