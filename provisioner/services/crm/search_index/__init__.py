"""The n-gram posting index behind customer partial-match search (``crm_search_grams``).

Partial match is ``search_text LIKE '%term%'`` over every contact of a tenant;
at a million contacts a scan is far too slow, and trigram indexes do not serve
the 1- and 2-character queries Japanese users type (``田``, ``田中``). So every
1-, 2- and 3-character substring (*gram*) of each part of a contact's search
text is indexed:

* a row of ``crm_search_grams`` is (tenant, gram, block) -> the set of contact
  ids ``id`` with ``id >> 16 == block`` whose text contains the gram, and ``n``,
  the size of that set. A set is stored sparse (``S`` + sorted uint16 offsets)
  up to :data:`SPARSE_MAX` members, else dense (``D`` + an 8,192-byte bitmap).
* a term of 1..3 characters IS a gram: its match set is exact without reading
  any contact, its total is ``sum(n)`` over a handful of blocks, and its first
  page needs only the first block(s).
* each trigram is also indexed at its place: key ``trigram + "\x1f" + "j.o"``
  (it starts at offset ``o`` of the contact's ``j``-th field; offsets from
  :data:`POSITIONS` on share ``j.*``).
* a longer term: the AND of its trigrams' sets is a superset (the trigrams may
  occur apart), estimated first on one block. Up to :data:`VERIFY_MAX`
  candidates (per database: reading a contact costs more on PostgreSQL) are
  verified with ``LIKE``; a larger set is rebuilt from positioned trigrams
  instead: the term is at ``j.o`` exactly when its ``i``-th trigram is at
  ``j.(o + i)`` for every ``i``, so AND-ing those chains is exact without
  reading a contact (chains through ``j.*`` only give candidates, verified with
  ``LIKE``). Either way results are identical to the scan.
* sets are combined in memory: sparse sets as Python sets, dense bitmaps as big
  integers (AND / OR / count are single C-level operations), and a page is
  walked over the non-zero bytes of a bitmap.

Grams never span the ``\\x1f`` separators between a contact's fields, and a
query term (:func:`provisioner.services.crm.text.search_key`) never contains
one, so "contains the term" is the same question on both sides.

Maintenance: ORM writes of contacts (create, update, delete, company renames,
remaps, bulk operations built on them) are diffed in a flush hook
(:func:`_after_flush`); bulk inserts (CSV import, seed data, the migration)
call :class:`Builder` with the new rows (:func:`insert_contacts` inserts and
indexes them: ids reserved up front, rows loaded with ``COPY`` or one
driver-level ``executemany``, each distinct field value's keys computed once
per index block). Writers of one tenant's index are
serialised on PostgreSQL by a transaction-scoped advisory lock (SQLite
transactions are already serial).

Single writes (a create, an update, a delete of a few contacts) do not rewrite
their sets: they append their key changes to a short per-tenant log
(``crm_search_pending``, :mod:`.pending`), folded into the sets in batches
(:func:`fold`) and applied over them by every read, so each write's WAL is in
proportion to what it changes, not to the size of the tenant's index.

    total, ids = page(conn, tenant_id, ["田中"], "all", 0, 50)

The package: :mod:`.gram_keys` (gram keys), :mod:`.codec` (the stored block format and
set algebra; the C module ``_postings.c`` writes the same format, a test checks
the constants agree), :mod:`.writer` (diffs, bulk blocks, the flush hook) and
:mod:`.pending` (the log of single writes), :mod:`.query` (the planner). This
module re-exports their public API.
"""

from __future__ import annotations

from provisioner.services.crm.search_index.codec import (
    BLOCK,
    BLOCK_BITS,
    MASK,
    SPARSE_MAX,
    Part,
    decode,
    encode,
    members,
    size,
)
from provisioner.services.crm.search_index.gram_keys import GRAM, POSITIONS, grams, keys, term_grams
from provisioner.services.crm.search_index.query import (
    VERIFY_EARLY,
    VERIFY_MAX,
    Blocks,
    count,
    ids_of,
    match_set,
    page,
    term_set,
)
from provisioner.services.crm.search_index.writer import (
    FLUSH_HOOK,
    NATIVE,
    Builder,
    apply,
    fold,
    index_new,
    insert_contacts,
    lock_tenant_writes,
    reserve_ids,
)

__all__ = [
    "BLOCK",
    "BLOCK_BITS",
    "FLUSH_HOOK",
    "GRAM",
    "MASK",
    "NATIVE",
    "POSITIONS",
    "SPARSE_MAX",
    "VERIFY_EARLY",
    "VERIFY_MAX",
    "Blocks",
    "Builder",
    "Part",
    "apply",
    "count",
    "decode",
    "encode",
    "fold",
    "grams",
    "ids_of",
    "index_new",
    "insert_contacts",
    "keys",
    "lock_tenant_writes",
    "match_set",
    "members",
    "page",
    "reserve_ids",
    "size",
    "term_grams",
    "term_set",
]
