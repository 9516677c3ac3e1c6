"""Signed configuration bundles: DSSE envelopes over RFC 8785 payloads, Ed25519.

Order of operations when reading a bundle (the invariant this package keeps):

1. size limits on the raw bytes;
2. envelope parsed strictly; payload type checked;
3. the Ed25519 signature verified over DSSE's PAE of the *exact* payload bytes;
4. only then is the payload parsed (strictly) and validated.

Nothing is ever re-serialized before verification.

    >>> from provisioner.bundles.signing import generate_private_key
    >>> from provisioner.bundles.envelope import sign_envelope, verify_envelope
    >>> key = generate_private_key()
    >>> raw = sign_envelope(b'{"a":1}', key)
    >>> verify_envelope(raw, lambda keyid: key.public_key()).payload
    b'{"a":1}'
"""
