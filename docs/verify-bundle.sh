#!/bin/sh
# Verify a provisioner bundle with nothing but python3 (standard library) and OpenSSL >= 3.0.
#
#   docs/verify-bundle.sh BUNDLE PEM
#
# BUNDLE is a DSSE envelope written by 'provisioner bundle export'; PEM is the
# publisher's Ed25519 public key ('provisioner tenant public-key SLUG').
# Exit 0 and "Signature Verified Successfully" when the signature made with
# that key verifies over DSSE's PAE of the exact payload bytes; non-zero otherwise.
# The verified payload is left in $WORK/payload.json when KEEP=1 is set.
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 BUNDLE PEM" >&2
    exit 2
fi
BUNDLE=$1
PEM=$2
EXPECTED_TYPE="application/vnd.provisioner.bundle+json"

WORK=$(mktemp -d)
if [ "${KEEP:-0}" = "1" ]; then
    echo "work directory: $WORK" >&2
else
    trap 'rm -rf "$WORK"' EXIT
fi

# 1. The key id of the PEM: SHA-256 of the raw 32-byte Ed25519 public key
#    (the last 32 bytes of its DER SubjectPublicKeyInfo), first 32 hex digits.
openssl pkey -pubin -in "$PEM" -outform DER -out "$WORK/key.der"
KEYID=$(tail -c 32 "$WORK/key.der" | openssl dgst -sha256 -r | cut -c1-32)
echo "public key id:  $KEYID"

# 2. Split the envelope (strict JSON: duplicate member names are refused) into
#    payloadType, payload bytes and the signature made by that key id.
python3 - "$BUNDLE" "$KEYID" "$WORK" <<'PY'
import base64, json, sys
bundle, keyid, work = sys.argv[1:4]
def no_duplicates(pairs):
    names = [k for k, _ in pairs]
    if len(names) != len(set(names)):
        sys.exit("envelope has a duplicate member name")
    return dict(pairs)
with open(bundle, "rb") as fh:
    env = json.loads(fh.read(), object_pairs_hook=no_duplicates)
if set(env) != {"payload", "payloadType", "signatures"}:
    sys.exit("not a DSSE envelope: members are %s" % sorted(env))
sigs = [s["sig"] for s in env["signatures"] if s.get("keyid") == keyid]
if not sigs:
    sys.exit("no signature by key %s (signed by: %s)"
             % (keyid, ", ".join(s.get("keyid", "?") for s in env["signatures"])))
with open(work + "/type.txt", "w") as fh:
    fh.write(env["payloadType"])
with open(work + "/payload.json", "wb") as fh:
    fh.write(base64.b64decode(env["payload"], validate=True))
with open(work + "/sig.bin", "wb") as fh:
    fh.write(base64.b64decode(sigs[0], validate=True))
PY

TYPE=$(cat "$WORK/type.txt")
if [ "$TYPE" != "$EXPECTED_TYPE" ]; then
    echo "payloadType is '$TYPE', expected '$EXPECTED_TYPE'" >&2
    exit 1
fi
echo "payload type:   $TYPE"

# 3. PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body   (lengths in bytes, decimal)
TYPE_LEN=$(printf '%s' "$TYPE" | wc -c | tr -d ' ')
BODY_LEN=$(wc -c < "$WORK/payload.json" | tr -d ' ')
printf 'DSSEv1 %s %s %s ' "$TYPE_LEN" "$TYPE" "$BODY_LEN" > "$WORK/pae.bin"
cat "$WORK/payload.json" >> "$WORK/pae.bin"
echo "payload bytes:  $BODY_LEN"

# 4. Ed25519 over the PAE (-rawin: Ed25519 signs the message itself, no pre-hash).
openssl pkeyutl -verify -rawin -pubin -inkey "$PEM" -in "$WORK/pae.bin" -sigfile "$WORK/sig.bin"
