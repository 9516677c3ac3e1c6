"""The query planner: a term's exact set of contacts, and a page of a search.

A term of 1..3 characters IS a gram: its set is read, its total is ``sum(n)``.
A longer term is answered whichever way is cheaper for it (:func:`term_set`):
the AND of its trigrams' sets, estimated on one block, verified with ``LIKE`` up
to :data:`VERIFY_MAX` candidates; else rebuilt exactly from positioned trigrams
(:func:`_chains`). Either way results are identical to a scan.

Every read of a key's sets applies the tenant's pending log over them
(:func:`_patch`; :mod:`.pending`), loaded once per search: the results are those
of the sets with the log folded in, whether or not it has been.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Container, Iterable, Iterator
from itertools import islice
from typing import Any

from sqlalchemy import Connection, bindparam, text

from provisioner.services.crm.search_index import gram_keys, pending
from provisioner.services.crm.search_index.codec import (
    BLOCK_BITS,
    MASK,
    Part,
    Raw,
    and_part,
    decode,
    members,
    merge,
    or_part,
    raw_size,
    read_raw,
    size,
    to_part,
    union,
)
from provisioner.services.crm.search_index.gram_keys import GRAM, POS, term_grams
from provisioner.services.crm.search_index.pending import Pending

#: candidate sets up to this size are verified with LIKE (about 4 us each on SQLite,
#: 8-10 us on PostgreSQL); larger ones are matched by positions (a few ms whatever the
#: number of matches)
VERIFY_MAX = {"sqlite": 1500, "postgresql": 600}
#: ANDing trigram sets stops once this few candidates are left (verifying them is cheaper
#: than reading another trigram)
VERIFY_EARLY = 64
_IN_CHUNK = 500
_VERIFY_CHUNK = 20000

#: an exact set of contact ids of one tenant: block -> members
Blocks = dict[int, Part]


def _patch(
    log: Pending, gram: str, rows: dict[int, bytes], only: Container[int] | None = None
) -> dict[int, bytes]:
    """A key's stored sets (block -> data) with the pending log applied (in the blocks
    ``only`` names, if given). ``rows`` must hold every stored block the log changes
    (a block absent from it has no stored set)."""
    if gram not in log:
        return rows
    out = dict(rows)
    for block, (adds, removes) in log.changes(gram).items():
        if only is not None and block not in only:
            continue
        _, data = merge(out.get(block), adds, removes)
        if data is None:
            out.pop(block, None)
        else:
            out[block] = data
    return out


def _stored_n(data: bytes) -> int:
    """The number of members of a stored set."""
    return size(decode(data))


def _patched_sizes(
    conn: Connection, tenant_id: int, log: Pending, gram: str, sizes: dict[int, int]
) -> tuple[dict[int, int], dict[int, bytes]]:
    """A key's block sizes (block -> n, as stored) with the pending log applied, and the
    sets of the blocks it changed (read and patched here)."""
    if gram not in log:
        return sizes, {}
    changed = log.changes(gram)
    patched = _patch(log, gram, _stored_blocks(conn, tenant_id, gram, list(changed)))
    out = {block: n for block, n in sizes.items() if block not in changed}
    out.update((block, _stored_n(data)) for block, data in patched.items())
    return out, patched


def _estimated_sizes(log: Pending, gram: str, sizes: dict[int, int]) -> dict[int, int]:
    """A key's block sizes as stored, plus the pending log's adds, minus its removes: a
    plan's estimate, without reading the sets (a block the log adds to is present)."""
    if gram not in log:
        return sizes
    out = dict(sizes)
    for block, (adds, removes) in log.changes(gram).items():
        out[block] = max(out.get(block, 0) + len(adds) - len(removes), len(adds))
    return out


def _stored_blocks(
    conn: Connection, tenant_id: int, gram: str, blocks: list[int]
) -> dict[int, bytes]:
    """A key's stored sets in ``blocks``."""
    if not blocks:
        return {}
    return {
        block: bytes(data)
        for block, data in conn.execute(
            text(
                "SELECT block, data FROM crm_search_grams WHERE tenant_id = :t AND gram = :g "
                "AND block IN :b"
            ).bindparams(bindparam("b", expanding=True)),
            {"t": tenant_id, "g": gram, "b": blocks},
        )
    }


def _gram_blocks(conn: Connection, tenant_id: int, gram: str, log: Pending) -> Blocks:
    rows = {
        block: bytes(data)
        for block, data in conn.execute(
            text("SELECT block, data FROM crm_search_grams WHERE tenant_id = :t AND gram = :g"),
            {"t": tenant_id, "g": gram},
        )
    }
    return {block: decode(data) for block, data in _patch(log, gram, rows).items()}


def _and(a: Blocks, b: Blocks) -> Blocks:
    out: Blocks = {}
    for block in a.keys() & b.keys():
        both = and_part(a[block], b[block])
        if both:
            out[block] = both
    return out


def _or(a: Blocks, b: Blocks) -> Blocks:
    out = dict(a)
    for block, part in b.items():
        mine = out.get(block)
        out[block] = part if mine is None else or_part(mine, part)
    return out


def ids_of(blocks: Blocks) -> Iterator[int]:
    for block in sorted(blocks):
        base = block << BLOCK_BITS
        for offset in members(blocks[block]):
            yield base + offset


def count(blocks: Blocks) -> int:
    return sum(size(part) for part in blocks.values())


def _by_block(ids: Iterable[int]) -> Blocks:
    out: defaultdict[int, set[int]] = defaultdict(set)
    for contact_id in ids:
        out[contact_id >> BLOCK_BITS].add(contact_id & MASK)
    return dict(out)


def _verify(conn: Connection, tenant_id: int, term: str, candidates: Blocks) -> Blocks:
    """The candidates whose search text really contains ``term`` (one LIKE per candidate)."""
    ids = list(ids_of(candidates))
    pattern = "%" + term.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
    found: list[int] = []
    for start in range(0, len(ids), _VERIFY_CHUNK):
        chunk = ids[start : start + _VERIFY_CHUNK]
        if conn.dialect.name == "postgresql":
            sql = "id = ANY(:ids)"
            value: Any = chunk
        else:
            sql = "id IN (SELECT value FROM json_each(:ids))"
            value = json.dumps(chunk)
        query = (
            f"SELECT id FROM crm_contacts WHERE {sql} AND +tenant_id = :t "  # noqa: S608
            "AND search_text LIKE :p ESCAPE '/'"
        )  # (sql is one of two constants)
        found.extend(
            i for (i,) in conn.execute(text(query), {"ids": value, "t": tenant_id, "p": pattern})
        )
    return _by_block(found)


def term_set(conn: Connection, tenant_id: int, term: str, log: Pending | None = None) -> Blocks:
    """The exact set of contacts whose search text contains ``term`` (a search key).

    A term longer than a trigram is answered one of two ways, whichever is
    cheaper for it:

    * few candidates (the AND of its trigrams' sets, estimated on the largest
      block of the rarest): the sets are ANDed smallest first -- only those
      that narrow that block's sample, stopping once at most
      :data:`VERIFY_EARLY` are left -- and the candidates are verified with
      ``LIKE`` (a few microseconds each);
    * many: matched exactly by positioned trigrams (:func:`_chains`), whose cost
      depends on the number of places the trigrams occur at, not on the
      number of matches.

    ``log``: the tenant's pending log (:func:`.pending.load`), read here if not given.
    """
    if log is None:
        log = pending.load(conn, tenant_id)
    names = term_grams(term)
    if len(term) <= GRAM:
        return _gram_blocks(conn, tenant_id, term, log)
    stored: dict[str, dict[int, int]] = {gram: {} for gram in names}
    for gram, block, n in conn.execute(
        text(
            "SELECT gram, block, n FROM crm_search_grams WHERE tenant_id = :t AND gram IN :g"
        ).bindparams(bindparam("g", expanding=True)),
        {"t": tenant_id, "g": names},
    ):
        stored[gram][block] = n
    sizes: dict[str, int] = dict.fromkeys(names, 0)
    largest: dict[str, tuple[int, int]] = {}  # gram -> (n, block) of its largest block
    for gram in names:
        for block, n in _estimated_sizes(log, gram, stored[gram]).items():
            sizes[gram] += n
            largest[gram] = max(largest.get(gram, (0, 0)), (n, block))
    if len(largest) < len(names):
        return {}
    order = sorted(names, key=sizes.__getitem__)
    plan = order
    if sizes[order[0]] > VERIFY_EARLY:
        share, block = largest[order[0]]
        left = _sample(conn, tenant_id, order, block, log)
        if left[-1] * sizes[order[0]] > VERIFY_MAX[conn.dialect.name] * share:
            return _chains(conn, tenant_id, term, log)
        # AND only as many trigrams as narrow the sample down (names: often just one)
        plan = order[: next(i + 1 for i, n in enumerate(left) if n <= left[-1] * 1.25 + 1)]
    result: Blocks = {}
    for gram in plan:
        if result and count(result) <= VERIFY_EARLY:
            break
        if not result:
            result = _gram_blocks(conn, tenant_id, gram, log)
        else:
            result = _and_rows(result, _gram_rows(conn, tenant_id, gram, list(result), log))
        if not result:
            return {}
    return _verify(conn, tenant_id, term, result)


def _sample(
    conn: Connection, tenant_id: int, order: list[str], block: int, log: Pending
) -> list[int]:
    """How many contacts of ``block`` have the first 1, 2, ... trigrams (one query)."""
    found = {
        gram: bytes(data)
        for gram, data in conn.execute(
            text(
                "SELECT gram, data FROM crm_search_grams WHERE tenant_id = :t AND block = :b "
                "AND gram IN :g"
            ).bindparams(bindparam("g", expanding=True)),
            {"t": tenant_id, "b": block, "g": order},
        )
    }
    stored: dict[str, Raw] = {}
    for gram in order:
        rows = _patch(log, gram, {block: found[gram]} if gram in found else {}, (block,))
        if block in rows:
            stored[gram] = read_raw(rows[block])
    left: list[int] = []
    sample: Blocks = {}
    for gram in order:
        raw = stored.get(gram)
        if raw is None:
            sample = {}
        elif not left:
            sample = {block: to_part(raw)}
        elif sample:
            sample = _and_rows(sample, {block: raw})
        left.append(count(sample))
    return left


def _gram_rows(
    conn: Connection, tenant_id: int, gram: str, blocks: list[int], log: Pending
) -> dict[int, Raw]:
    """A gram's sets in ``blocks`` (the pending log applied), undecoded."""
    rows = _patch(log, gram, _stored_blocks(conn, tenant_id, gram, blocks), set(blocks))
    return {block: read_raw(data) for block, data in rows.items()}


def _and_rows(a: Blocks, rows: dict[int, Raw]) -> Blocks:
    """``a`` AND stored sets, without building a set of a large sparse one."""
    out: Blocks = {}
    for block, part in a.items():
        other = rows.get(block)
        if other is None:
            continue
        both: Part
        if isinstance(other, bytes):
            both = and_part(part, other)
        elif isinstance(part, bytes):
            both = {o for o in other if part[o >> 3] >> (o & 7) & 1}
        elif len(part) * 16 < len(other):  # few members: binary search the sorted offsets
            last = len(other)
            both = {o for o in part if (i := bisect_left(other, o)) < last and other[i] == o}
        else:
            both = part.intersection(other)
        if both:
            out[block] = both
    return out


def _chains(conn: Connection, tenant_id: int, term: str, log: Pending) -> Blocks:  # noqa: C901
    """Exact matches of a long term from positioned trigrams.

    The term is at offset ``o`` of field ``j`` exactly when its ``i``-th trigram
    is at ``j.(o + i)`` for every ``i``. The trigram with the fewest places
    anchors the chains; only the keys the chains need are read for the others.
    A chain through an offset past :data:`~.gram_keys.POSITIONS` (key ``j.*``) only gives
    candidates, verified with LIKE.
    """
    triples = [term[i : i + GRAM] for i in range(len(term) - GRAM + 1)]

    def bounds(triple: str) -> dict[str, Any]:
        return {"t": tenant_id, "lo": triple + POS, "hi": triple + chr(ord(POS) + 1)}

    distinct = list(dict.fromkeys(triples))
    # the number of places of each trigram, in one statement (generated :lN/:hN markers)
    counts = " UNION ALL ".join(
        f"SELECT {i} AS k, count(*) AS n FROM crm_search_grams "  # noqa: S608
        f"WHERE tenant_id = :t AND gram >= :l{i} AND gram < :h{i}"
        for i in range(len(distinct))
    )
    params: dict[str, Any] = {"t": tenant_id}
    for i, triple in enumerate(distinct):
        params[f"l{i}"], params[f"h{i}"] = triple + POS, triple + chr(ord(POS) + 1)
    spread = dict.fromkeys(distinct, 0)
    for k, n in conn.execute(text(counts), params):
        spread[distinct[k]] = int(n)
    if log:  # (an estimate: the keys the log names, whether or not also stored)
        for triple in distinct:
            spread[triple] += len(log.keys_with_prefix(triple + POS))
    anchor_at = min(range(len(triples)), key=lambda i: spread[triples[i]])
    anchor = triples[anchor_at]
    stored: dict[str, dict[int, Raw]] = defaultdict(dict)
    where = bounds(anchor)
    found: dict[str, dict[int, bytes]] = defaultdict(dict)
    for gram, block, data in conn.execute(
        text(
            "SELECT gram, block, data FROM crm_search_grams WHERE tenant_id = :t "
            "AND gram >= :lo AND gram < :hi"
        ),
        where,
    ):
        found[gram][block] = bytes(data)
    for key in log.keys_with_prefix(anchor + POS) if log else ():
        found[key] = _patch(log, key, found.get(key, {}))
    for key, rows in found.items():
        if rows:
            stored[key] = {block: read_raw(data) for block, data in rows.items()}
    plans: list[tuple[str, list[str] | None]] = []  # anchor key -> keys of every link
    for anchor_key in list(stored):
        field_no, _, at = anchor_key[len(anchor) + 1 :].partition(".")
        start = None if at == "*" else int(at) - anchor_at
        if start is not None and start < 0:
            continue
        if start is None or start + len(triples) - 1 >= gram_keys.POSITIONS:
            plans.append((anchor_key, None))  # not provable from positions: verify
        else:
            plans.append(
                (anchor_key, [f"{t}{POS}{field_no}.{start + i}" for i, t in enumerate(triples)])
            )
    wanted = sorted({key for _, keys in plans if keys for key in keys} - found.keys())
    more: dict[str, dict[int, bytes]] = defaultdict(dict)
    for begin in range(0, len(wanted), _IN_CHUNK):
        for gram, block, data in conn.execute(
            text(
                "SELECT gram, block, data FROM crm_search_grams WHERE tenant_id = :t AND gram IN :g"
            ).bindparams(bindparam("g", expanding=True)),
            {"t": tenant_id, "g": wanted[begin : begin + _IN_CHUNK]},
        ):
            more[gram][block] = bytes(data)
    logged = {k for t in distinct for k in log.keys_with_prefix(t + POS)} if log else set()
    for key in wanted:
        rows = _patch(log, key, more.get(key, {})) if key in logged else more.get(key, {})
        if rows:
            stored[key] = {block: read_raw(data) for block, data in rows.items()}
    chains: defaultdict[int, list[Part]] = defaultdict(list)
    unsure: Blocks = {}
    for anchor_key, keys in plans:
        if keys is None:
            for block, part in ((b, to_part(r)) for b, r in stored[anchor_key].items()):
                unsure[block] = or_part(unsure[block], part) if block in unsure else part
            continue
        links = [stored.get(key) for key in keys]
        if not all(links):
            continue
        ordered = sorted((link for link in links if link), key=raw_size)
        chain = {b: to_part(r) for b, r in ordered[0].items()}
        for link in ordered[1:]:
            chain = _and_rows(chain, link)
            if not chain:
                break
        for block, part in chain.items():
            chains[block].append(part)
    exact = {block: union(parts) for block, parts in chains.items()}
    if unsure:
        doubtful: Blocks = {}
        for block, part in unsure.items():
            known = exact.get(block)
            rest = {o for o in members(part) if known is None or not and_part({o}, known)}
            if rest:
                doubtful[block] = rest
        exact = _or(exact, _verify(conn, tenant_id, term, doubtful))
    return exact


def match_set(
    conn: Connection, tenant_id: int, terms: list[str], match: str, log: Pending | None = None
) -> Blocks:
    """AND (``all``) or OR (``any``) of the terms' exact sets (``log``: as for
    :func:`term_set`, read once here if not given)."""
    if log is None:
        log = pending.load(conn, tenant_id)
    result: Blocks | None = None
    for term in sorted(terms, key=len, reverse=True):
        current = term_set(conn, tenant_id, term, log)
        if result is None:
            result = current
        elif match == "all":
            result = _and(result, current)
        else:
            result = _or(result, current)
        if match == "all" and not result:
            return {}
    return result or {}


def _walk(blocks: Blocks, offset: int, limit: int, descending: bool) -> list[int]:
    """``limit`` ids after skipping ``offset``, in id order (or reverse)."""
    out: list[int] = []
    for block in sorted(blocks, reverse=descending):
        if len(out) >= limit:
            break
        part = blocks[block]
        total = size(part)
        if offset >= total:
            offset -= total
            continue
        base = block << BLOCK_BITS
        out.extend(
            base + o for o in islice(members(part, descending), offset, offset + limit - len(out))
        )
        offset = 0
    return out


def page(
    conn: Connection,
    tenant_id: int,
    terms: list[str],
    match: str,
    offset: int,
    limit: int,
    *,
    descending: bool = False,
) -> tuple[int, list[int]]:
    """Exact total and one page of ids (in id order) of the contacts matching the terms.

    A single term of 1..3 characters is answered from the stored counts plus the
    blocks the page falls in; anything else builds the full match set. Either way the
    tenant's pending log is read once and applied.
    """
    log = pending.load(conn, tenant_id)
    if len(terms) == 1 and len(terms[0]) <= GRAM:
        stored: dict[int, int] = {
            block: n
            for block, n in conn.execute(
                text("SELECT block, n FROM crm_search_grams WHERE tenant_id = :t AND gram = :g"),
                {"t": tenant_id, "g": terms[0]},
            )
        }
        counted, patched = _patched_sizes(conn, tenant_id, log, terms[0], stored)
        sizes = sorted(counted.items())
        total = sum(n for _, n in sizes)
        out: list[int] = []
        skip = offset
        for block, n in reversed(sizes) if descending else sizes:
            if len(out) >= limit:
                break
            if skip >= n:
                skip -= n
                continue
            data = patched.get(block) or conn.scalar(
                text(
                    "SELECT data FROM crm_search_grams WHERE tenant_id = :t AND gram = :g "
                    "AND block = :b"
                ),
                {"t": tenant_id, "g": terms[0], "b": block},
            )
            assert data is not None
            out.extend(_walk({block: decode(bytes(data))}, skip, limit - len(out), descending))
            skip = 0
        return total, out
    blocks = match_set(conn, tenant_id, terms, match, log)
    return count(blocks), _walk(blocks, offset, limit, descending)
