"""Envelope encryption of tenant signing keys.

Each private key is encrypted with its own random 256-bit data key (AES-GCM);
the data key is wrapped (AES-GCM) by the deployment's master key, which never
enters the database: it comes from ``PROVISIONER_MASTER_KEY`` (base64 of 32
bytes) or from the file ``master.key`` in the data directory, created with
mode 0600 on first use. The tenant id and key id are bound in as associated
data, so a ciphertext copied onto another tenant's row does not decrypt.

    >>> master = MasterKey(bytes(32))
    >>> sealed = master.seal(b"secret", aad=b"tenant:1")
    >>> master.open(sealed, aad=b"tenant:1")
    b'secret'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from provisioner.errors import ConfigurationError

ENV_VAR = "PROVISIONER_MASTER_KEY"
_NONCE = 12


@dataclass(frozen=True)
class Sealed:
    """A data key wrapped by the master key and a secret encrypted by that data key."""

    wrapped_key: bytes  # nonce || AES-GCM(master, data key)
    ciphertext: bytes  # nonce || AES-GCM(data key, secret)


def _encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)


class MasterKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError("the master key must be 32 bytes")
        self._key = key

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (HMAC-SHA256 of the master key over its name), the
        same in every process of the deployment (e.g. the login form's CSRF MAC key)."""
        return hmac.new(
            self._key, b"provisioner/derived|" + purpose.encode(), hashlib.sha256
        ).digest()

    def seal(self, secret: bytes, *, aad: bytes) -> Sealed:
        data_key = AESGCM.generate_key(bit_length=256)
        return Sealed(
            wrapped_key=_encrypt(self._key, data_key, b"provisioner/data-key|" + aad),
            ciphertext=_encrypt(data_key, secret, b"provisioner/secret|" + aad),
        )

    def open(self, sealed: Sealed, *, aad: bytes) -> bytes:
        try:
            data_key = _decrypt(self._key, sealed.wrapped_key, b"provisioner/data-key|" + aad)
            return _decrypt(data_key, sealed.ciphertext, b"provisioner/secret|" + aad)
        except InvalidTag:
            raise ConfigurationError(
                "a signing key cannot be decrypted with this master key",
                hint=f"use the master key this database was created with ({ENV_VAR} or master.key)",
            ) from None

    @classmethod
    def from_environment(cls, home: Path) -> MasterKey:
        """``PROVISIONER_MASTER_KEY`` if set, else ``<home>/master.key`` (created if missing)."""
        text = os.environ.get(ENV_VAR)
        if text:
            try:
                key = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:
                raise ConfigurationError(
                    f"{ENV_VAR} must be the base64 encoding of 32 random bytes",
                    hint='generate one with: python3 -c "import base64,os;'
                    'print(base64.b64encode(os.urandom(32)).decode())"',
                )
            return cls(key)
        path = home / "master.key"
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(base64.b64encode(secrets.token_bytes(32)) + b"\n")
        try:
            key = base64.b64decode(path.read_bytes().strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ConfigurationError(f"{path} does not hold a valid master key")
        return cls(key)
