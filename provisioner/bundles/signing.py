"""Ed25519 keys: generation, key ids, PEM import and export.

A key id is the first 32 hex digits of SHA-256 over the raw 32-byte public
key, so anyone holding the PEM can recompute it.

    >>> key = generate_private_key()
    >>> len(key_id(key.public_key()))
    32
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from provisioner.errors import ValidationFailed


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(public)).hexdigest()[:32]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_from_raw(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_pem(pem: bytes | str, *, source: str = "public key") -> Ed25519PublicKey:
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ValidationFailed(
            f"{source} is not a PEM public key",
            hint="export it with 'provisioner tenant public-key SLUG'",
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValidationFailed(f"{source} is not an Ed25519 key ({type(key).__name__})")
    return key


def private_raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def private_from_raw(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)
