"""DSSE envelopes (https://github.com/secure-systems-lab/dsse), Ed25519 only.

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

The signature covers PAE of the payload type and the exact payload bytes; the
envelope carries the payload base64-encoded, so those bytes survive any
transport untouched.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pybase64
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from provisioner.bundles import strict_json
from provisioner.bundles.signing import key_id
from provisioner.canonical import canonical_bytes
from provisioner.errors import BundleRejected, excerpt

PAYLOAD_TYPE = "application/vnd.provisioner.bundle+json"
MAX_SIGNATURES = 4
#: A keyid is up to 128 printable ASCII characters; only a provisioner key id
#: (32 lowercase hex digits, :func:`~provisioner.bundles.signing.key_id`) is ever
#: looked up, any other is a key this deployment cannot know.
MAX_KEYID = 128
_KEYID = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEYID}}}")
_PROVISIONER_KEYID = re.compile(r"[0-9a-f]{32}")

KeyResolver = Callable[[str], Ed25519PublicKey | None]


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_envelope(
    payload: bytes, key: Ed25519PrivateKey, payload_type: str = PAYLOAD_TYPE
) -> bytes:
    envelope = {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [
            {
                "keyid": key_id(key.public_key()),
                "sig": base64.b64encode(key.sign(pae(payload_type, payload))).decode("ascii"),
            }
        ],
    }
    return canonical_bytes(envelope) + b"\n"


@dataclass(frozen=True)
class VerifiedEnvelope:
    payload_type: str
    payload: bytes
    #: the key that counts: the smallest of ``key_ids`` (the reader of the payload
    #: picks the publisher's among them, see ``payload.read_bundle``)
    key_id: str
    #: where the payload's base64 text sits in the envelope, when it is written there as
    #: ``base64(payload)`` exactly (``raw[start:end]``); None otherwise
    payload_span: tuple[int, int] | None = None
    #: every known key whose signature verifies, sorted (the envelope's order does not count)
    key_ids: tuple[str, ...] = ()


def _b64(value: Any, what: str) -> bytes:
    """Strict base64 (``binascii`` strict mode), decoded by SIMD code when it is canonical.

    A megabyte of payload takes ``binascii`` milliseconds, ``pybase64`` a tenth of
    one. Its result is used only when encoding it back gives exactly the input, i.e.
    the input is the canonical base64 of those bytes -- which strict decoding would
    accept and turn into the same bytes. Anything else is ``binascii``'s to judge.
    """
    if not isinstance(value, str):
        raise BundleRejected(f"envelope {what} must be a base64 string")
    if value.isascii():
        text = value.encode("ascii")
        try:
            decoded = pybase64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            pass
        else:
            if pybase64.b64encode(decoded) == text:
                return decoded
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise BundleRejected(f"envelope {what} is not valid base64") from None


def parse_envelope(raw: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """Strictly parse an envelope: (payloadType, payload bytes, [(keyid, sig)])."""
    payload_type, payload, sigs, _ = _parse(raw)
    return payload_type, payload, sigs


_PAYLOAD_MEMBER = b'"payload":"'


def _payload_span(raw: bytes, text: str, payload: bytes, canonical: bool) -> tuple[int, int] | None:
    """``(start, end)`` with ``raw[start:end] == base64(payload)``, if the envelope has it so.

    ``text`` is the envelope's (strictly decoded) ``payload`` string. It is written
    verbatim after the member name in a canonical envelope (base64 needs no JSON
    escape), and may be in a compact one; strict base64 then re-encodes to the same
    text except, possibly, in unused bits of its last group, which are compared.
    """
    start = raw.find(_PAYLOAD_MEMBER)
    if start < 0:
        return None
    start += len(_PAYLOAD_MEMBER)
    end = start + len(text)
    if not canonical and (
        not raw.startswith(text.encode("ascii"), start) or raw[end : end + 1] != b'"'
    ):
        return None
    if payload:
        last = payload[(len(payload) - 1) // 3 * 3 :]
        if binascii.b2a_base64(last, newline=False) != raw[end - 4 : end]:
            return None
    return start, end


def _parse(raw: bytes) -> tuple[str, bytes, list[tuple[str, bytes]], tuple[int, int] | None]:
    strict_json.check_size(raw, "bundle")
    strict_json.check_encoding(raw, "bundle")
    if not raw.lstrip().startswith(b"{"):
        raise BundleRejected("bundle is not a DSSE envelope (expected a JSON object)")
    envelope, canonical = strict_json.loads_strict_fast(raw, what="bundle envelope")
    if not isinstance(envelope, dict):
        raise BundleRejected("bundle is not a DSSE envelope (expected a JSON object)")
    unknown = set(envelope) - {"payload", "payloadType", "signatures"}
    if unknown:
        shown = ", ".join(excerpt(name, 40) for name in sorted(unknown)[:5])
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise BundleRejected(f"envelope has unknown field(s): {shown}{more}")
    payload_type = envelope.get("payloadType")
    if payload_type != PAYLOAD_TYPE:
        raise BundleRejected(
            f"envelope payloadType is {excerpt(payload_type)}, expected {PAYLOAD_TYPE!r}",
            hint="this is not a provisioner configuration bundle",
        )
    text = envelope.get("payload")
    payload = _b64(text, "payload")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise BundleRejected("envelope carries no signature")
    if len(signatures) > MAX_SIGNATURES:
        raise BundleRejected(f"envelope carries more than {MAX_SIGNATURES} signatures")
    sigs: list[tuple[str, bytes]] = []
    for entry in signatures:
        if not isinstance(entry, dict) or set(entry) - {"keyid", "sig"}:
            raise BundleRejected("envelope signature entries have only 'keyid' and 'sig'")
        keyid = entry.get("keyid")
        if not isinstance(keyid, str) or not keyid:
            raise BundleRejected("envelope signature has no keyid")
        if not _KEYID.fullmatch(keyid):
            raise BundleRejected(
                f"envelope signature keyid {excerpt(keyid)} is not a key id",
                hint=f"a keyid is 1 to {MAX_KEYID} printable ASCII characters",
            )
        sigs.append((keyid, _b64(entry.get("sig"), "signature")))
    assert isinstance(text, str)  # _b64 accepted it
    return payload_type, payload, sigs, _payload_span(raw, text, payload, canonical)


def verify_envelope(raw: bytes, resolve: KeyResolver) -> VerifiedEnvelope:
    """Verify every signature whose key ``resolve`` knows; raise if none verifies.

    The result names all the keys whose signatures verify (``key_ids``), so that
    which of two valid signatures counts is decided by key, never by the order of
    the envelope's entries.
    """
    payload_type, payload, sigs, span = _parse(raw)
    strict_json.check_size(payload, "bundle payload")
    message = pae(payload_type, payload)
    known = False
    verified: set[str] = set()
    for keyid, sig in sigs:
        if keyid in verified or not _PROVISIONER_KEYID.fullmatch(keyid):
            continue
        public = resolve(keyid)
        if public is None:
            continue
        known = True
        if key_id(public) != keyid:
            continue
        try:
            public.verify(sig, message)
        except InvalidSignature:
            continue
        verified.add(keyid)
    if verified:
        ids = tuple(sorted(verified))
        return VerifiedEnvelope(payload_type, payload, ids[0], span, ids)
    if not known:
        ids_text = ", ".join(
            k if _PROVISIONER_KEYID.fullmatch(k) else excerpt(k, 40) for k, _ in sigs
        )
        raise BundleRejected(
            f"bundle is signed by an unknown or untrusted key ({ids_text})",
            hint="trust the publisher's public key first, or pass --public-key",
        )
    raise BundleRejected("bundle signature does not verify: the bundle was altered or forged")
