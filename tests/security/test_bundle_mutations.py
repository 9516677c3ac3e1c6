"""The mutation suite: seeded hostile variants of real bundles (tests/security/mutations.py).

Every mutation is either accepted unchanged (the payload the publisher signed,
with the publisher's key) or refused with a typed ``ProvisionerError`` whose
message is bounded; none is an internal error, and none received into a tenant
changes a configuration or stores anything when it is refused.

Two shares: ``read_bundle`` in memory (what ``receive`` and ``bundle verify``
both run first), and ``receive`` into a real tenant on SQLite and PostgreSQL.
By default a fast subset runs (400 in memory, 40 per backend); with
``PROVISIONER_FULL_MUTATIONS=1`` the full set: 12,000 in memory (6,000 of each of
two bundles) and 300 per backend. ``PROVISIONER_MUTATION_REPORT=FILE`` writes the
figures (tried / refused / accepted unchanged / accepted as re-signed) as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from provisioner.bundles.payload import Audience, Source, VerifiedBundle, build_bundle, read_bundle
from provisioner.bundles.signing import key_id
from provisioner.canonical import digest
from provisioner.clock import parse_instant
from provisioner.config.defaults import default_document
from provisioner.db.models import Tenant
from provisioner.errors import MAX_MESSAGE, ProvisionerError
from provisioner.services import transfers
from tests.security.craft import counts, signer_of
from tests.security.mutations import Mutation, Mutator
from tests.support import World, labelled

FULL = os.environ.get("PROVISIONER_FULL_MUTATIONS") == "1"
SEED = int(os.environ.get("PROVISIONER_MUTATION_SEED", "11"))
IN_MEMORY = 6_000 if FULL else 200  # per bundle; two bundles
PER_BACKEND = 300 if FULL else 40
REPORT = os.environ.get("PROVISIONER_MUTATION_REPORT")


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"mutation-key-%d" % seed).digest())


def _bundle(*, bound: bool) -> bytes:
    """A real bundle as the exporter writes it: the default document with a relabelled
    checkbox, signed by ``_key(1)``; ``bound``: addressed to a copy key."""
    data = default_document().to_data()
    data["checkboxes"] = labelled(data, 1, "年賀状")["checkboxes"]
    audience = (
        Audience(copy_key="k7m2q9x4ab", binding="ab" * 32, tenant="client") if bound else None
    )
    return build_bundle(
        config=data,
        source=Source(
            tenant="partner",
            name="パートナー株式会社",
            config_version=3,
            config_digest=digest(data),
        ),
        signer=_key(1),
        created_at=parse_instant("2026-11-23T09:00:00Z"),
        expires_at=parse_instant("2026-11-24T09:00:00Z"),
        audience=audience,
        bundle_id="b_" + ("k7m2q9x4ab" if bound else "p1n2e3d4zz") + "0" * 16,
    )  # reproducible


class Tally:
    """Outcomes by kind, written to ``PROVISIONER_MUTATION_REPORT`` when set."""

    def __init__(self) -> None:
        self.by_kind: dict[str, Counter[str]] = {}

    def add(self, mutation: Mutation, outcome: str) -> None:
        self.by_kind.setdefault(mutation.kind, Counter())[outcome] += 1

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counter in self.by_kind.values():
            total.update(counter)
        return total

    def write(self, share: str) -> None:
        if not REPORT:
            return
        path = Path(REPORT)
        report: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        totals = self.totals()
        report[share] = {
            "tried": sum(totals.values()),
            **totals,
            "by_kind": {k: dict(v) for k, v in sorted(self.by_kind.items())},
        }
        path.write_text(json.dumps(report, indent=1, sort_keys=True))


def _refusal(mutation: Mutation, exc: ProvisionerError) -> str:
    text = exc.diagnostics()
    where = f"{mutation.kind} ({mutation.detail})"
    assert len(text) <= 2 * MAX_MESSAGE + 20, f"{where}: unbounded message ({len(text):,})"
    text.encode("utf-8")  # printable: no lone surrogate reaches a terminal or a response
    return "refused"


def _accepted(
    mutation: Mutation,
    payload: bytes,
    signer: str,
    expected_signer: str,
    config: dict[str, Any],
    genuine_config: dict[str, Any],
) -> str:
    where = f"{mutation.kind} ({mutation.detail})"
    assert mutation.acceptable is not None, f"{where}: accepted, must be refused"
    assert payload == mutation.acceptable, f"{where}: accepted with other payload bytes"
    assert signer == expected_signer, f"{where}: accepted as signed by {signer}"
    if mutation.unchanged:
        assert config == genuine_config, f"{where}: accepted with another configuration"
        return "accepted unchanged"
    return "accepted as re-signed"


def _read(mutation: Mutation, resolve: Any) -> VerifiedBundle | ProvisionerError:
    try:
        return read_bundle(mutation.raw, resolve)
    except ProvisionerError as exc:
        return exc
    except Exception as exc:  # an internal error: the finding this suite exists for
        raise AssertionError(
            f"{mutation.kind} ({mutation.detail}): internal error "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from exc


@pytest.mark.parametrize("bound", [True, False], ids=["copy-key", "pinned"])
def test_mutations_of_real_bundles_in_memory(bound: bool) -> None:
    """read_bundle, the first step of receive and all of ``bundle verify``, on each mutation."""
    raw = _bundle(bound=bound)
    signer, other, stranger = _key(1), _key(2), _key(3)
    known = {key_id(k.public_key()): k.public_key() for k in (signer, other)}
    genuine = read_bundle(raw, known.get)
    mutator = Mutator(raw, signer=signer, other=other, stranger=stranger)
    tally = Tally()
    for mutation in mutator.generate(seed=SEED + bound, count=IN_MEMORY):
        result = _read(mutation, known.get)
        if isinstance(result, ProvisionerError):
            outcome = _refusal(mutation, result)
        else:
            outcome = _accepted(
                mutation,
                result.payload_bytes,
                result.key_id,
                genuine.key_id,
                result.config,
                genuine.config,
            )
        tally.add(mutation, outcome)
    assert set(tally.by_kind) == set(mutator.kinds) or not FULL
    assert sum(tally.totals().values()) == IN_MEMORY
    tally.write(f"in_memory_{'copy_key' if bound else 'pinned'}")


def _configs(world: World) -> dict[str, Any]:
    with world.app.transaction() as ctx:
        return {t.slug: t.config_version for t in ctx.session.scalars(select(Tenant))}


def test_mutations_received_into_a_tenant(world: World, db_url: str) -> None:
    """receive on each mutation of a genuine bundle: refused storing nothing, or accepted
    as the signed bytes, and no tenant's configuration changes."""
    world.tenant("partner")
    world.tenant("client")
    world.tenant("other")
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    key = world.key("client")
    raw = world.export("partner", key)
    mutator = Mutator(
        raw, signer=signer_of(world, "partner"), other=signer_of(world, "other"), stranger=_key(3)
    )
    configs = _configs(world)
    tally = Tally()
    partner_key = json.loads(raw)["signatures"][0]["keyid"]
    mutations = [
        mutator.same("control", "the genuine bundle", raw),  # first: it is accepted
        *mutator.generate(seed=SEED, count=PER_BACKEND, skip=frozenset({"oversize"})),
    ]
    genuine_config: dict[str, Any] | None = None
    for mutation in mutations:
        before = counts(world, "client")
        try:
            transfer_id = world.receive("client", mutation.raw)
        except ProvisionerError as exc:
            outcome = _refusal(mutation, exc)
            assert counts(world, "client") == before, f"{mutation.kind}: refused, but stored"
        except Exception as exc:
            raise AssertionError(
                f"{mutation.kind} ({mutation.detail}): internal error "
                f"{type(exc).__name__}: {str(exc)[:200]}"
            ) from exc
        else:
            transfer = world.transfer(transfer_id)
            signed = mutation.acceptable or b""
            assert transfer.payload_digest == "sha256:" + hashlib.sha256(signed).hexdigest(), (
                f"{mutation.kind} ({mutation.detail}): stored another payload"
            )
            with world.app.transaction() as ctx:
                incoming = json.loads(transfers.incoming_bytes(ctx.session, transfer))
            genuine_config = incoming if genuine_config is None else genuine_config
            outcome = _accepted(
                mutation, signed, transfer.signer_key_id, partner_key, incoming, genuine_config
            )
        assert _configs(world) == configs, f"{mutation.kind}: a configuration changed"
        tally.add(mutation, outcome)
    assert tally.by_kind["control"]["accepted unchanged"] == 1
    tally.write(f"receive_{db_url.split(':')[0].split('+')[0]}")
