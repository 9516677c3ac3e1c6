"""The copy-key format: ``pcpy_<selector>_<secret><checksum>``.

* selector: 10 Crockford base32 characters (50 random bits), stored in clear,
  used to find the key's row;
* secret: 32 characters (160 random bits); only its SHA-256 is stored;
* checksum: 6 characters, CRC-32 of ``pcpy_<selector>_<secret>``, so a mistyped
  key is rejected before any database lookup.

Crockford decoding is forgiving the way people need: case-insensitive, ``I``
and ``L`` read as ``1``, ``O`` as ``0``, hyphens and spaces ignored.

    >>> key = generate()
    >>> parse(key.text).selector == key.selector
    True
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass

from provisioner.errors import KeyRejected

PREFIX = "pcpy_"
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
SELECTOR_LEN = 10
SECRET_LEN = 32
CHECKSUM_LEN = 6
_TRANSLATE = str.maketrans({"i": "1", "l": "1", "o": "0", "-": None, " ": None})


@dataclass(frozen=True)
class CopyKey:
    selector: str
    secret: str

    @property
    def text(self) -> str:
        body = f"{PREFIX}{self.selector}_{self.secret}"
        return body + _checksum(body)

    @property
    def secret_hash(self) -> bytes:
        return hash_secret(self.secret)

    def binding(self, bundle_id: str, *, publisher_key_id: str, source_tenant: str) -> str:
        """Proof, placed in a bundle's audience, that its sender held this key.

        HMAC-SHA256 keyed by the stored hash of the secret, so the receiving
        side can check it from its database and the bundle reveals nothing
        that would let anyone redeem the key. The message names the bundle,
        the signing key and the source tenant, so a proof lifted out of an
        intercepted bundle is worthless in any other bundle or under any
        other signer.
        """
        return binding_for(
            self.secret_hash,
            bundle_id,
            publisher_key_id=publisher_key_id,
            source_tenant=source_tenant,
        )


def binding_for(
    secret_hash: bytes, bundle_id: str, *, publisher_key_id: str, source_tenant: str
) -> str:
    message = "|".join(
        ("provisioner/copy-key-binding/v1", bundle_id, publisher_key_id, source_tenant)
    )
    return hmac.new(secret_hash, message.encode("utf-8"), hashlib.sha256).hexdigest()


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(b"provisioner/copy-key|" + secret.encode("ascii")).digest()


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode("ascii"))
    return "".join(ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(CHECKSUM_LEN)))


def generate() -> CopyKey:
    return CopyKey(_random(SELECTOR_LEN), _random(SECRET_LEN))


def parse(text: str) -> CopyKey:
    """Parse and checksum-verify a key a person typed or pasted. No database involved."""
    cleaned = text.strip().lower()
    if not cleaned.startswith(PREFIX):
        raise KeyRejected(
            "this is not a copy key: copy keys start with 'pcpy_'",
            hint="paste the whole key the target tenant's admin generated",
        )
    rest = cleaned[len(PREFIX) :]
    selector, sep, tail = rest.partition("_")
    selector, tail = selector.translate(_TRANSLATE), tail.translate(_TRANSLATE)
    expected = SELECTOR_LEN + SECRET_LEN + CHECKSUM_LEN
    if not sep or len(selector) != SELECTOR_LEN or len(tail) != SECRET_LEN + CHECKSUM_LEN:
        raise KeyRejected(
            f"copy key has the wrong length (expected pcpy_ + {expected} characters)",
            hint="the key may be cut short; copy it again",
        )
    if any(ch not in ALPHABET for ch in selector + tail):
        raise KeyRejected("copy key contains characters that cannot appear in a key")
    secret, checksum = tail[:SECRET_LEN], tail[SECRET_LEN:]
    key = CopyKey(selector, secret)
    if not hmac.compare_digest(_checksum(f"{PREFIX}{selector}_{secret}"), checksum):
        raise KeyRejected(
            "copy key checksum does not match: the key was mistyped",
            hint="copy and paste the key instead of typing it",
        )
    return key
