"""Gram keys: what a contact's search text is indexed under, and what a term is looked up by.

Every 1-, 2- and 3-character substring (*gram*) of each field of a search text,
plus each trigram at its place: ``trigram + "\x1f" + "j.o"`` (it starts at offset
``o`` of the ``j``-th field; offsets from :data:`POSITIONS` on share ``j.*``). The C
module (``_postings.c``) builds the same keys for a bulk-loaded block; the
writer's :func:`~provisioner.services.crm.search_index.writer.postings` is its
reference.
"""

from __future__ import annotations

from itertools import repeat
from operator import add

GRAM = 3
#: between the fields of a search text (never inside a field, a gram or a query term)
SEP = "\x1f"
#: trigram + POS + "field.offset": never a plain gram (those are <= 3 chars)
POS = "\x1f"
#: trigrams are also indexed at their exact field offset below this
POSITIONS = 64


def grams(search_text: str) -> set[str]:
    """Every 1-, 2- and 3-character substring of each field of a search text."""
    out: set[str] = set()
    for part in search_text.split(SEP):
        out.update(part)
        if len(part) > 1:
            pairs = list(map(add, part, part[1:]))
            out.update(pairs)
            out.update(map(add, pairs, part[2:]))
    return out


def keys(search_text: str) -> set[str]:
    """What a contact is indexed under: its grams plus its positioned trigrams.

    A positioned trigram is ``trigram + "\x1f" + "j.o"``: the trigram starts at
    offset ``o`` of the ``j``-th field. Offsets from :data:`POSITIONS` on share
    the key ``j.*``.
    """
    out: set[str] = set()
    for j, part in enumerate(search_text.split(SEP)):
        out.update(part_keys(j, part))
    return out


def suffixes(j: int) -> tuple[list[str], str]:
    """The position suffixes of field ``j``: ``"\x1fj.0"`` .. and the far one ``"\x1fj.*"``."""
    found = _SUFFIXES.get((j, POSITIONS))
    if found is None:
        where = f"{POS}{j}."
        found = ([where + str(o) for o in range(POSITIONS)], where + "*")
        _SUFFIXES[(j, POSITIONS)] = found
    return found


_SUFFIXES: dict[tuple[int, int], tuple[list[str], str]] = {}


def part_keys(j: int, part: str) -> set[str]:
    out = set(part)
    if len(part) > 1:
        pairs = list(map(add, part, part[1:]))
        out.update(pairs)
        triples = list(map(add, pairs, part[2:]))
        out.update(triples)
        near, far = suffixes(j)
        out.update(map(add, triples, near))  # stops at POSITIONS
        if len(triples) > POSITIONS:
            out.update(map(add, triples[POSITIONS:], repeat(far)))
    return out


def term_grams(term: str) -> list[str]:
    """The grams a term is looked up by: itself if short, else its trigrams."""
    if len(term) <= GRAM:
        return [term]
    return list(dict.fromkeys(term[i : i + GRAM] for i in range(len(term) - GRAM + 1)))
