"""Keys and posting sets of one n-gram index block (C; see ``_postings.c``).

The reference implementations are ``search_index.writer.postings`` and
``search_index.writer.block_rows``; the stored format is ``search_index.codec``'s.
"""

def rows(
    fields: list[dict[str, list[int]]], positions: int, sparse_max: int, /
) -> list[tuple[str, int, bytes]]:
    """The block's index rows (key, n, data) sorted by key, each set encoded as stored:
    ``b"S"`` + little-endian uint16 offsets up to ``sparse_max`` members, else
    ``b"D"`` + an 8,192-byte bitmap."""

def postings(fields: list[dict[str, list[int]]], positions: int, /) -> dict[str, list[int]]:
    """Each key of the block -> its sorted distinct offsets."""

def text_rows(
    offsets: list[int], texts: list[str], positions: int, sparse_max: int, /
) -> list[tuple[str, int, bytes]]:
    """:func:`rows` of the block whose contact at ``offsets[k]`` has search text
    ``texts[k]`` (fields separated by ``"\\x1f"``), grouped by field value natively."""

def text_postings(offsets: list[int], texts: list[str], positions: int, /) -> dict[str, list[int]]:
    """:func:`postings` of the block whose contact at ``offsets[k]`` has search text
    ``texts[k]`` (fields separated by ``"\\x1f"``), grouped by field value natively."""
