"""RFC 8785 (JSON Canonicalization Scheme) serialization of provisioner data.

RFC 8785 sorts object members by their UTF-16 code units, writes integers
plainly, emits strings as UTF-8 with only ``"``, ``\\`` and control characters
escaped, and uses no whitespace. orjson with ``OPT_SORT_KEYS`` produces exactly
that *for the data provisioner signs*, because that data's grammar guarantees:

* every object key is ASCII (codes, field names; enforced by the schemas), so
  code-point order equals UTF-16 order;
* every number is an integer within +/-2**53 (there are no floats in a
  configuration document or a bundle payload).

``canonical_bytes`` checks nothing by itself (that would cost a full walk);
the guarantee comes from the models, and a property test cross-checks the
output against the ``rfc8785`` reference implementation.

    >>> canonical_bytes({"b": "日本", "a": [1, True, None]})
    b'{"a":[1,true,null],"b":"\\xe6\\x97\\xa5\\xe6\\x9c\\xac"}'
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS


def canonical_bytes(data: Any) -> bytes:
    """RFC 8785 canonical JSON of ``data`` (see the module docstring for the domain)."""
    return orjson.dumps(data, option=_OPTIONS)


def canonical_members(data: Mapping[str, Any], member: Callable[[Any], bytes]) -> Pieces:
    """``canonical_bytes(data)`` of an object assembled from its members' canonical bytes,
    ``member(value)`` (e.g. remembered per section: :mod:`provisioner.config.memo`), so
    that a document sharing most members with others is not serialised whole again.
    The pieces are not joined until the bytes are needed (:class:`Pieces`).

    Members are ordered as ``canonical_bytes`` orders them (the keys are ASCII, see the
    module docstring); a test checks the two agree.

    >>> bytes(canonical_members({"b": [2], "a": {"x": 1}}, canonical_bytes))
    b'{"a":{"x":1},"b":[2]}'
    """
    if not data:
        return Pieces([b"{}"])
    parts = [b"{"]
    for key in sorted(data):
        parts += (orjson.dumps(key), b":", member(data[key]), b",")
    parts[-1] = b"}"  # in place of the last comma
    return Pieces(parts)


class Pieces:
    """Bytes kept as the pieces they are made of: their length and SHA-256 without
    joining them (joining a megabyte for every tenant of a rollout costs more than
    hashing it: fresh pages), joined when the bytes themselves are wanted."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.size = sum(len(part) for part in parts)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def sha256_hex(self) -> str:
        hashed = hashlib.sha256()
        for part in self.parts:
            hashed.update(part)
        return hashed.hexdigest()


def sha256_hex(data: bytes | Pieces) -> str:
    if isinstance(data, Pieces):
        return data.sha256_hex()
    return hashlib.sha256(data).hexdigest()


def digest(data: Any) -> str:
    """``sha256:<hex>`` of the canonical form: the identity of a document."""
    return "sha256:" + sha256_hex(canonical_bytes(data))
