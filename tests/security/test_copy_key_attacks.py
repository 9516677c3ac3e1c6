"""Attacks on copy keys: reuse, expiry, wrong tenant, revocation, guessing, races.

A copy key is a 24-hour, one-use invitation bound to the target tenant. Each
test names the threat it defends against; all run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from provisioner.canonical import canonical_bytes
from provisioner.clock import FrozenClock, format_instant
from provisioner.db.models import CopyKeyRow, KeyFailure
from provisioner.errors import BundleRejected, KeyRejected, ProvisionerError, RateLimited
from provisioner.security import copykey
from provisioner.services import actors, copykeys, transfers
from tests.security.craft import audit_count, counts, key_row, payload_of, resign
from tests.support import World


@pytest.fixture
def pair(world: World) -> World:
    world.tenant("partner")
    world.tenant("client")
    return world


def _selector(key: str) -> str:
    return copykey.parse(key).selector


def _failures(world: World, actor: str) -> int:
    with world.app.transaction() as ctx:
        return int(
            ctx.session.scalar(
                select(func.count()).select_from(KeyFailure).where(KeyFailure.actor == actor)
            )
            or 0
        )


# --------------------------------------------------------------------------- one use


def test_used_key_rejected(pair: World) -> None:
    """Threat: a copy key is used a second time (by the same or another sender)."""
    pair.tenant("other-source")
    key = pair.key("client")
    pair.send("partner", key)
    before = counts(pair, "client")
    for source in ("partner", "other-source"):
        with pytest.raises(KeyRejected, match="already used"):
            pair.send(source, key)
    assert counts(pair, "client") == before


def test_used_key_rejected_for_bundle_file(pair: World) -> None:
    """Threat: a second bundle file exported with an already-redeemed key."""
    key = pair.key("client")
    pair.receive("client", pair.export("partner", key))
    second = pair.export("partner", key)
    with pytest.raises(KeyRejected, match="already used"):
        pair.receive("client", second)


# --------------------------------------------------------------------------- 24 hours


def test_key_accepted_one_second_before_expiry(pair: World, clock: FrozenClock) -> None:
    """Boundary: a key is still valid one second before its 24 hours are up."""
    key = pair.key("client")
    clock.advance(hours=24, seconds=-1)
    transfer = pair.send("partner", key)
    assert pair.transfer(transfer).status == "pending"


def test_key_rejected_exactly_at_expiry(pair: World, clock: FrozenClock) -> None:
    """Threat: a key used at (or after) its 24-hour expiry."""
    key = pair.key("client")
    clock.advance(hours=24)
    before = counts(pair, "client")
    with pytest.raises((KeyRejected, BundleRejected), match="expired"):
        pair.send("partner", key)
    assert counts(pair, "client") == before


def test_key_expiry_enforced_even_if_bundle_claims_later_expiry(
    pair: World, clock: FrozenClock
) -> None:
    """Threat: a sender (holding the key) signs a bundle with a far-future expiry so the
    bundle outlives the key; the key's own 24 h expiry must still refuse it."""
    key = pair.key("client")
    data = payload_of(pair.export("partner", key))
    data["expires_at"] = format_instant(clock.now() + timedelta(days=30))
    forged = resign(pair, "partner", canonical_bytes(data))
    clock.advance(hours=24)
    before = counts(pair, "client")
    with pytest.raises(KeyRejected, match="copy key expired"):
        pair.receive("client", forged)
    assert counts(pair, "client") == before


def test_key_just_before_expiry_with_forged_later_bundle_expiry_accepted(
    pair: World, clock: FrozenClock
) -> None:
    """Control for the test above: one second earlier the same bundle is accepted."""
    key = pair.key("client")
    data = payload_of(pair.export("partner", key))
    data["expires_at"] = format_instant(clock.now() + timedelta(days=30))
    forged = resign(pair, "partner", canonical_bytes(data))
    clock.advance(hours=24, seconds=-1)
    assert pair.transfer(pair.receive("client", forged)).status == "pending"


# --------------------------------------------------------------------------- wrong tenant


def test_another_tenants_key_rejected(pair: World) -> None:
    """Threat: client B's key used to deliver into tenant C (a key is bound to its tenant);
    the audience is forged (re-signed by the sender) to name C."""
    pair.tenant("other")
    key = pair.key("client")
    data = payload_of(pair.export("partner", key))
    data["audience"]["tenant"] = "other"
    forged = resign(pair, "partner", canonical_bytes(data))
    before = counts(pair, "other")
    with pytest.raises(KeyRejected, match="another tenant"):
        pair.receive("other", forged)
    assert counts(pair, "other") == before
    assert key_row(pair, _selector(key)).used_at is None


def test_key_generated_by_target_cannot_be_used_to_send_to_itself(pair: World) -> None:
    """Threat: a tenant 'sends' to itself with its own key (no real source)."""
    key = pair.key("client")
    with pytest.raises(BundleRejected, match="itself"):
        pair.send("client", key)


# --------------------------------------------------------------------------- revocation


def test_revoked_key_rejected(pair: World) -> None:
    """Threat: a key leaked, then revoked by the target's admin, is still tried."""
    key = pair.key("client")
    with pair.app.transaction() as ctx:
        copykeys.revoke(ctx, actors.resolve(ctx, "client-admin", "client"), _selector(key))
    before = counts(pair, "client")
    with pytest.raises(KeyRejected, match="revoked"):
        pair.send("partner", key)
    raw = pair.export("partner", key)
    with pytest.raises(KeyRejected, match="revoked"):
        pair.receive("client", raw)
    assert counts(pair, "client") == before


def test_key_cannot_be_revoked_by_another_tenant(pair: World) -> None:
    """Threat: tenant partner revokes (denial of service) client's key by its selector."""
    key = pair.key("client")
    with pair.app.transaction() as ctx, pytest.raises(ProvisionerError, match="no copy key"):
        copykeys.revoke(ctx, actors.resolve(ctx, "partner-admin", "partner"), _selector(key))
    assert key_row(pair, _selector(key)).revoked_at is None


# --------------------------------------------------------------------------- guessing


def _mistyped(key: str) -> list[str]:
    """Every one-character substitution in the selector and secret, plus a transposition."""
    head = len(copykey.PREFIX)
    variants = []
    for i in range(head, len(key) - copykey.CHECKSUM_LEN):
        if key[i] == "_":
            continue
        other = "7" if key[i] != "7" else "8"
        variants.append(key[:i] + other + key[i + 1 :])
    i = head + 3
    if key[i] != key[i + 1]:
        variants.append(key[:i] + key[i + 1] + key[i] + key[i + 2 :])
    return variants


def test_mistyped_key_rejected_by_checksum_before_any_database_lookup(pair: World) -> None:
    """Threat: probing keys / typos reaching the database (timing oracle, load); a mistyped
    key must be refused by its checksum alone: zero SQL statements run."""
    key = pair.key("client")
    with pair.app.transaction() as ctx:
        actor = actors.resolve(ctx, "partner-admin", "partner")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    variants = _mistyped(key)
    assert len(variants) > 40
    event.listen(pair.app.engine, "before_cursor_execute", count)
    try:
        for bad in variants:
            with pytest.raises(KeyRejected, match="checksum"), pair.app.transaction() as ctx:
                transfers.send(ctx, actor, bad)
    finally:
        event.remove(pair.app.engine, "before_cursor_execute", count)
    assert statements == []
    assert _failures(pair, "tenant:partner") == 0
    assert pair.transfer(pair.send("partner", key)).status == "pending"  # key intact


def test_key_with_guessed_secret_rejected(pair: World) -> None:
    """Threat: an attacker who knows a key's selector (it is visible in bundles) guesses
    the secret, with a correct checksum."""
    key = pair.key("client")
    guessed = copykey.CopyKey(_selector(key), copykey.generate().secret).text
    with pytest.raises(KeyRejected, match="does not exist"):
        pair.send("partner", guessed)
    assert key_row(pair, _selector(key)).failed_attempts == 1
    assert key_row(pair, _selector(key)).used_at is None


def test_failed_redemptions_rate_limited_and_recover(pair: World, clock: FrozenClock) -> None:
    """Threat: online brute force of copy keys; after 5 failures from one tenant within 15
    minutes even a valid key is refused (RateLimited) until the window has passed."""
    pair.tenant("bystander")
    key = pair.key("client")
    for _ in range(copykeys.MAX_FAILURES_PER_ACTOR):
        with pytest.raises(KeyRejected):
            pair.send("partner", copykey.generate().text)  # well formed, unknown
    assert _failures(pair, "tenant:partner") == copykeys.MAX_FAILURES_PER_ACTOR
    with pytest.raises(RateLimited, match="too many"):
        pair.send("partner", key)
    clock.advance(minutes=15, seconds=-1)
    with pytest.raises(RateLimited):
        pair.send("partner", key)
    # other tenants are not affected by partner's failures
    assert pair.transfer(pair.send("bystander", pair.key("client"))).status == "pending"
    clock.advance(seconds=1)
    assert pair.transfer(pair.send("partner", key)).status == "pending"


def test_key_locked_after_too_many_failures(pair: World, clock: FrozenClock) -> None:
    """Threat: a slow guess of one key's secret (selector known, paced to dodge the
    per-tenant rate limit): the key locks for the guessing tenant after 10 failures."""
    key = pair.key("client")
    selector = _selector(key)
    pair.tenant("mallory")
    for _batch in range(2):
        for _ in range(copykeys.MAX_FAILURES_PER_ACTOR):
            guessed = copykey.CopyKey(selector, copykey.generate().secret).text
            with pytest.raises(KeyRejected):
                pair.send("mallory", guessed)
        clock.advance(minutes=16)
    assert key_row(pair, selector).failed_attempts >= copykeys.MAX_FAILURES_PER_KEY
    with pytest.raises(KeyRejected, match="locked"):
        pair.send("mallory", key)  # even with the right secret, for mallory


def test_stranger_cannot_lock_a_key_for_its_real_sender(pair: World, clock: FrozenClock) -> None:
    """Threat: anyone who knows a selector locked the key for everyone with 10 failures
    from any tenant. Failures count per sending tenant: the real sender still delivers."""
    key = pair.key("client")
    selector = _selector(key)
    pair.tenant("mallory")
    for _batch in range(3):
        for _ in range(copykeys.MAX_FAILURES_PER_ACTOR):
            guessed = copykey.CopyKey(selector, copykey.generate().secret).text
            with pytest.raises(KeyRejected):
                pair.send("mallory", guessed)
        clock.advance(minutes=16)
    assert key_row(pair, selector).failed_attempts == 3 * copykeys.MAX_FAILURES_PER_ACTOR
    with pair.app.transaction() as ctx:
        actors.resolve(ctx, "client-admin", "client")  # as its admin sees it
        row = ctx.session.scalar(select(CopyKeyRow).where(CopyKeyRow.selector == selector))
        assert row is not None
        assert copykeys.state(row, ctx.clock.now()) == "active"
    assert pair.transfer(pair.send("partner", key)).status == "pending"


def test_failed_redemption_recorded_in_audit_of_target(pair: World) -> None:
    """Threat: silent probing; the target's audit log shows failed redemptions of its keys."""
    key = pair.key("client")
    guessed = copykey.CopyKey(_selector(key), copykey.generate().secret).text
    with pytest.raises(KeyRejected):
        pair.send("partner", guessed)
    assert audit_count(pair, "client", "copy_key:redemption_failed") == 1


def test_send_with_expired_key_says_the_copy_key_expired(pair: World, clock: FrozenClock) -> None:
    """Refusal clarity: the source admin using an expired key is told the KEY expired and to
    ask the target's admin for a new one (not that a bundle expired)."""
    key = pair.key("client")
    clock.advance(hours=24)
    with pytest.raises(KeyRejected, match="copy key expired"):
        pair.send("partner", key)
