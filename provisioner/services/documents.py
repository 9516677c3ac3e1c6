"""Configuration documents stored once per distinct content, addressed by digest.

``config_documents`` holds each distinct document (RFC 8785 bytes) once, under
``"sha256:" + SHA-256(bytes)``. Tenants' rows name them: a transfer its
incoming sections (``transfers.incoming_digest``), a configuration version
either the whole document (``config_versions.digest``, ``base_digest`` empty)
or a stored document it differs from by a small delta (``base_digest`` +
``delta``, :mod:`provisioner.config.delta`). Rolling a template out to many
tenants thus stores the template once, and per tenant only what differs (its
own changes); every delta is taken against a document stored whole, so reading
a version is one lookup plus one application.

The table has no tenant: a document is reachable only by its digest, through a
tenant's own rows (row-level security applies to those rows). Quotas and billing
count each version's logical size (``config_versions.size_bytes``), whatever its
storage.

Reading is cheap through two in-process caches keyed by digest (the content of
a digest never changes): the bytes of recently used documents, and their parsed
form (:func:`parsed`, shared: read-only for every caller).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from provisioner.canonical import Pieces, canonical_bytes, sha256_hex
from provisioner.config import delta as config_delta
from provisioner.db.models import ConfigVersion, StoredDocument
from provisioner.gcpause import paused_gc
from provisioner.lru import LRU
from provisioner.services.transaction import Context

#: a version is stored as a delta when the delta is at most this fraction of the document
DELTA_FRACTION = 4
#: bytes of document bodies kept in memory (least recently used first out)
BODY_CACHE_BYTES = 64 * 1024 * 1024
#: parsed documents kept in memory (bases of deltas, templates of a rollout)
PARSED_CACHE = 16


def digest_of(body: bytes) -> str:
    return "sha256:" + sha256_hex(body)


_BODIES: LRU[str, bytes] = LRU(BODY_CACHE_BYTES, len)
_PARSED: LRU[str, Any] = LRU(PARSED_CACHE)


def clear_caches() -> None:
    """Forget the cached documents (tests; the content of a digest never changes)."""
    _BODIES.clear()
    _PARSED.clear()


# --------------------------------------------------------------------------- write


def held(digest: str) -> bool:
    """Whether this process holds the document in memory (it stored or read it: it is
    probably stored, unless the transaction that stored it rolled back)."""
    return _BODIES.get(digest) is not None or _PARSED.get(digest) is not None


def stored(ctx: Context, digests: Iterable[str]) -> set[str]:
    """Which of ``digests`` are stored (one query)."""
    wanted = sorted(set(digests))
    if not wanted:
        return set()
    return set(
        ctx.session.scalars(select(StoredDocument.digest).where(StoredDocument.digest.in_(wanted)))
    )


def store_many(
    ctx: Context,
    bodies: Mapping[str, bytes],
    *,
    known: Collection[str] = (),
    look: bool = True,
) -> None:
    """Store each ``digest -> body`` not stored yet (one multi-row INSERT; a concurrent
    writer of the same content is no conflict: ``ON CONFLICT DO NOTHING``).

    ``known``: digests the caller knows are stored (neither looked up nor sent); of the
    others, ``look`` True: those found stored are skipped (one look-up); False: no
    look-up, the INSERT alone decides (one round trip, the bytes sent).
    """
    if not bodies:
        return
    for d, b in bodies.items():
        _BODIES.put(d, b)
    todo = {d: b for d, b in bodies.items() if d not in known}
    if not todo:
        return
    present = stored(ctx, todo) if look else set()
    rows = [
        {"digest": d, "body": b, "size_bytes": len(b), "created_at": ctx.clock.now()}
        for d, b in todo.items()
        if d not in present
    ]
    if not rows:
        return
    dialect = postgresql if ctx.session.get_bind().dialect.name == "postgresql" else sqlite
    ctx.session.execute(
        dialect.insert(StoredDocument).on_conflict_do_nothing(index_elements=["digest"]), rows
    )


def store(
    ctx: Context,
    body: bytes,
    digest: str | None = None,
    *,
    parsed_as: Any = None,
    look: bool = True,
) -> str:
    """Store one document (if new); its digest. ``parsed_as``: the document parsed, kept
    in the cache of parsed documents (it must never be changed afterwards)."""
    digest = digest or digest_of(body)
    store_many(ctx, {digest: body}, look=look)
    if parsed_as is not None:
        _PARSED.put(digest, parsed_as)
    return digest


# --------------------------------------------------------------------------- read


def body(session: Session, digest: str) -> bytes:
    """The stored document's bytes."""
    cached: bytes | None = _BODIES.get(digest)
    if cached is not None:
        return cached
    found = session.scalar(select(StoredDocument.body).where(StoredDocument.digest == digest))
    if found is None:
        raise LookupError(f"configuration document {digest} is not stored")
    data = bytes(found)
    _BODIES.put(digest, data)
    return data


def bodies(session: Session, digests: Iterable[str]) -> dict[str, bytes]:
    """Several stored documents' bytes (one query for those not in memory)."""
    out: dict[str, bytes] = {}
    missing = []
    for digest in set(digests):
        found = _BODIES.get(digest)
        if found is None:
            missing.append(digest)
        else:
            out[digest] = found
    if missing:
        for digest, data in session.execute(
            select(StoredDocument.digest, StoredDocument.body).where(
                StoredDocument.digest.in_(sorted(missing))
            )
        ):
            out[digest] = bytes(data)
            _BODIES.put(digest, out[digest])
    return out


@paused_gc()
def parsed(session: Session, digest: str) -> Any:
    """The stored document, parsed once and shared: READ-ONLY for every caller."""
    found = _PARSED.get(digest)
    if found is None:
        found = orjson.loads(body(session, digest))
        _PARSED.put(digest, found)
    return found


def _delta(row: ConfigVersion) -> config_delta.Delta | None:
    if row.delta is None:  # the base document itself
        return None
    data: config_delta.Delta = orjson.loads(row.delta)
    return data


@paused_gc()
def version_data(session: Session, row: ConfigVersion, *, shared: bool = False) -> dict[str, Any]:
    """A version's document. ``shared``: it may share parts with the cache (read-only);
    otherwise it is the caller's own to change."""
    if row.base_digest is None:
        if shared:
            data: dict[str, Any] = parsed(session, row.digest)
            return data
        return orjson.loads(body(session, row.digest))  # type: ignore[no-any-return]
    base = (
        parsed(session, row.base_digest) if shared else orjson.loads(body(session, row.base_digest))
    )
    result: dict[str, Any] = config_delta.apply(base, _delta(row))
    return result


def version_body(session: Session, row: ConfigVersion) -> bytes:
    """A version's document as RFC 8785 bytes."""
    if row.base_digest is None:
        return body(session, row.digest)
    return canonical_bytes(version_data(session, row, shared=True))


@dataclass(frozen=True)
class Storage:
    """How one version's document is stored: whole (``base_digest`` None, the body stored
    under its own digest) or as a delta from a stored document."""

    base_digest: str | None
    delta: bytes | None


WHOLE = Storage(None, None)


def plan_storage(
    ctx: Context,
    items: Sequence[tuple[str, bytes | Pieces, Any, Sequence[str]]],
    *,
    known: set[str] | None = None,
) -> list[Storage]:
    """Store the documents of new versions, each whole or as a delta, and say how.

    ``items``: per version (digest, body or its pieces, its parsed data or None, digests of stored
    documents it may be close to, best first). A document already stored is named by
    its digest alone, and so is one that several items share (it is stored whole, once:
    a good base for later deltas); else the delta from the first candidate it is close
    to (the delta at most 1/:data:`DELTA_FRACTION` of the document) is kept, else the
    document is stored whole.

    ``known``: digests of documents the caller knows are stored (this transaction or a
    committed one stored them; a stored document is never removed): not looked up. The
    look-up (one query) covers only the other items' digests and, for an item whose
    document may need a delta, its candidates -- none at all when every item's document
    is known. The digests found stored or stored here are added to ``known``: a caller
    that keeps it beyond this transaction keeps them only once the transaction commits.
    """
    held: set[str] = known if known is not None else set()
    counts = Counter(digest for digest, *_ in items)
    wanted: set[str] = set()
    for digest, _, _, near in items:
        if digest in held:
            continue
        wanted.add(digest)
        if counts[digest] == 1:  # it may become a delta: its candidates are looked up too
            wanted.update(near)
    # the candidates too: a delta is only ever taken from a document the database holds
    found = stored(ctx, wanted - held)
    present = held | found
    out: list[Storage] = []
    new: dict[str, bytes] = {}
    for digest, data_bytes, data, near in items:
        if digest in present or digest in new:
            out.append(WHOLE)
            continue
        if counts[digest] > 1:  # the same document for several tenants: stored whole, once
            new[digest] = bytes(data_bytes)
            out.append(WHOLE)
            continue
        best: Storage | None = None
        limit = len(data_bytes) // DELTA_FRACTION
        for candidate in dict.fromkeys(near):  # the first one close enough is taken
            if candidate == digest or candidate not in present:
                continue
            try:
                base = parsed(ctx.session, candidate)
            except LookupError:
                continue
            if data is None:
                data = orjson.loads(bytes(data_bytes))
            found_delta = config_delta.make(base, data)
            encoded = orjson.dumps(found_delta)
            if len(encoded) <= limit:
                best = Storage(candidate, encoded)
                break
        if best is None:
            new[digest] = bytes(data_bytes)
            best = WHOLE
        out.append(best)
    store_many(ctx, new, look=False)  # looked up above: none of them is stored
    held |= found
    held.update(new)
    return out
