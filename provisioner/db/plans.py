"""A transfer's plan as stored: whole, or its own part plus a part stored once for many.

Most of a plan is the incoming change itself -- its sections, summary and changes, the
upgrade's source and the addresses it takes, the signer's key -- and every target of a
rollout at the same base gets the same. What is a target's own is small: the version and
document the plan was made against, the data impact on its records, the label it trusts
the signer under, its lineage transfer and the local changes an upgrade keeps
(:data:`OWN`). A rollout stores the shared part once per distinct content, as a
``config_documents`` document (content addressed, like the configurations themselves),
and each transfer row keeps its own part with the shared part's digest under
:data:`SHARED` (:func:`stored_form`); a plan received alone is stored whole, as before.

``Transfer.plan`` gives the whole plan back either way (:func:`load`), a new dict the
caller may change; ``Transfer.stored_plan`` is the column as stored. The shared parts read
are kept in memory by digest (the content of a digest never changes), so listing many
transfers of the same rollout reads their shared part once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

from provisioner.canonical import canonical_bytes, sha256_hex
from provisioner.lru import LRU

#: the key of a stored plan that names its shared part (a plan itself never has it)
SHARED = "shared"

#: the keys of a plan that are a target's own: whole values (None), or in a nested object,
#: the listed keys (the rest of that object is shared)
OWN: Mapping[str, frozenset[str] | None] = {
    "base_version": None,
    "base_digest": None,
    "impact": None,
    "signer": frozenset({"pinned_as"}),
    "upgrade": frozenset({"transfer", "kept"}),
}


def split(plan: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(own, shared) parts of a plan; :func:`join` puts them back together."""
    if SHARED in plan:
        raise ValueError(f"a plan has no {SHARED!r} key")
    own: dict[str, Any] = {}
    shared: dict[str, Any] = {}
    for key, value in plan.items():
        if key not in OWN:
            shared[key] = value
            continue
        nested = OWN[key]
        if nested is None or not isinstance(value, dict):
            own[key] = value
            continue
        mine = {k: v for k, v in value.items() if k in nested}
        if mine:
            own[key] = mine
        shared[key] = {k: v for k, v in value.items() if k not in nested}
    return own, shared


def join(own: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    """The whole plan from its two parts (:func:`split`)."""
    plan = dict(shared)
    for key, value in own.items():
        if key == SHARED:
            continue
        if OWN.get(key) is not None and isinstance(value, dict):
            plan[key] = {**plan.get(key, {}), **value}
        else:
            plan[key] = value
    return plan


def shared_document(plan: Mapping[str, Any]) -> tuple[dict[str, Any], str, bytes]:
    """(own part, digest, body) of a plan whose shared part is stored as a document."""
    own, shared = split(plan)
    body = canonical_bytes(shared)
    digest = "sha256:" + sha256_hex(body)
    _KEPT.put(digest, body)  # the writer reads its plans back without a query
    return own, digest, body


def stored_form(own: Mapping[str, Any], digest: str) -> dict[str, Any]:
    """The ``plan`` column of a transfer whose shared part is the document ``digest``."""
    return {**own, SHARED: digest}


#: shared parts kept in memory (least recently used out first): a few rollouts' worth
_KEPT: LRU[str, bytes] = LRU(256)
_READ = text("SELECT body FROM config_documents WHERE digest = :digest")


def _shared_body(session: Session | None, digest: str) -> bytes:
    found = _KEPT.get(digest)
    if found is not None:
        return found
    if session is None:
        raise RuntimeError("a transfer's plan was read outside its session")
    read = session.scalar(_READ, {"digest": digest})
    if read is None:
        raise LookupError(f"the shared part {digest} of a transfer's plan is not stored")
    body = bytes(read)
    _KEPT.put(digest, body)
    return body


def load(session: Session | None, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The whole plan from the column as stored (a new dict: the caller's own).
    ``session``: the row's (None: detached; then only a shared part held in memory)."""
    digest = stored.get(SHARED)
    if digest is None:
        return dict(stored)
    return join(stored, orjson.loads(_shared_body(session, digest)))
