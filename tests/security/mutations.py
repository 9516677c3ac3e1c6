"""Seeded mutations of real bundles, for the mutation suite (test_bundle_mutations.py).

A :class:`Mutator` takes a genuine bundle file and the keys of the world it comes
from, and makes hostile variants of it, deterministically from a seed. Each
:class:`Mutation` says what a correct reader may accept:

* ``acceptable is None``: it must be refused (a typed ``ProvisionerError``);
* otherwise the only payload it may be accepted with: the genuine payload (the
  change did not touch what was signed: "accepted unchanged"), or, for a payload
  re-signed with the publisher's real key, exactly those re-signed bytes.

Kinds (:data:`KINDS`) follow the attack run of issue 11: byte flips in payload,
signature and file; base64 variants; payloadType; added, removed and duplicate
members; NaN/Infinity; huge numbers; deep nesting; oversize; escapes; surrogates;
BOM and UTF-16/32; trailing garbage; key id swaps; foreign signatures; re-signed
payload mutations.

    mutator = Mutator(raw, signer=partner_key, other=other_key, stranger=stranger_key)
    for mutation in mutator.generate(seed=11, count=10_000):
        ...  # read it; check the outcome against mutation.acceptable
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.bundles.envelope import PAYLOAD_TYPE, pae
from provisioner.bundles.signing import key_id
from provisioner.bundles.strict_json import MAX_BYTES
from provisioner.canonical import canonical_bytes


@dataclass(frozen=True)
class Mutation:
    kind: str
    detail: str
    raw: bytes
    #: the payload bytes a reader may accept this file with; None: it must be refused
    acceptable: bytes | None
    #: True when ``acceptable`` is the genuine payload (the change did not touch it)
    unchanged: bool = False


def _dumps(envelope: Any) -> bytes:
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def _copy(data: Any) -> Any:
    return json.loads(json.dumps(data))


HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u202e",
    "\ufeff",
    "=1+1",
    "＝1+1",
    "x" * 100_000,
    "\u0301",
    "𠮷野家",
    "\\",
    '"',
    "\u2028",
    "\x7f",
    "\x1b[31m",
    "Ａ",
    "null",
    "NaN",
]
HUGE_NUMBERS = [
    b"2147483647",
    b"2147483648",
    b"-2147483649",
    b"9007199254740991",
    b"9007199254740993",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"1" + b"0" * 30,
    b"1" + b"0" * 5000,
    b"1e400",
    b"-1e400",
    b"1.5",
    b"-0",
    b"1E2",
    b"0.0",
    b"1e-400",
    b"00",
    b"-",
]


class Mutator:
    """Hostile variants of one genuine bundle ``raw`` signed by ``signer``.

    ``other``: the key of another tenant the reader knows (a valid signature that is
    not the publisher's); ``stranger``: a key the reader does not know.
    """

    def __init__(
        self,
        raw: bytes,
        *,
        signer: Ed25519PrivateKey,
        other: Ed25519PrivateKey,
        stranger: Ed25519PrivateKey,
    ) -> None:
        self.raw = raw
        self.envelope: dict[str, Any] = json.loads(raw)
        self.payload = base64.b64decode(self.envelope["payload"])
        self.data: dict[str, Any] = json.loads(self.payload)
        self.signer, self.other, self.stranger = signer, other, stranger
        self.paths = list(_paths(self.data))
        self.numbers = [p for p, v in self.paths if type(v) is int and p]
        self.strings = [p for p, v in self.paths if isinstance(v, str) and p]
        self.containers = [p for p, v in self.paths if isinstance(v, (dict, list))]
        self.kinds: dict[str, Callable[[random.Random], Mutation]] = {
            "payload-byte-flip": self.payload_byte_flip,
            "signature-byte-flip": self.signature_byte_flip,
            "file-byte-flip": self.file_byte_flip,
            "base64-variant": self.base64_variant,
            "payload-type": self.payload_type,
            "envelope-members": self.envelope_members,
            "nan-infinity": self.nan_infinity,
            "huge-number": self.huge_number,
            "deep-nesting": self.deep_nesting,
            "oversize": self.oversize,
            "escapes": self.escapes,
            "surrogates": self.surrogates,
            "bom-encoding": self.bom_encoding,
            "trailing-garbage": self.trailing_garbage,
            "keyid-swap": self.keyid_swap,
            "foreign-signature": self.foreign_signature,
            "resigned-payload": self.resigned_payload,
        }

    # ------------------------------------------------------------------ helpers

    def sign(
        self, payload: bytes, key: Ed25519PrivateKey | None = None, payload_type: str = PAYLOAD_TYPE
    ) -> dict[str, Any]:
        key = key or self.signer
        return {
            "keyid": key_id(key.public_key()),
            "sig": base64.b64encode(key.sign(pae(payload_type, payload))).decode(),
        }

    def resigned(self, kind: str, detail: str, payload: bytes) -> Mutation:
        """``payload`` signed by the publisher's real key: it may be accepted as such."""
        envelope = {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [self.sign(payload)],
        }
        return Mutation(kind, detail, _dumps(envelope), payload, payload == self.payload)

    def same(self, kind: str, detail: str, raw: bytes) -> Mutation:
        """The payload untouched: it may be accepted, unchanged."""
        return Mutation(kind, detail, raw, self.payload, True)

    def refused(self, kind: str, detail: str, raw: bytes) -> Mutation:
        return Mutation(kind, detail, raw, None)

    def envelope_with(self, **changes: Any) -> dict[str, Any]:
        envelope = _copy(self.envelope)
        envelope.update(changes)
        return envelope

    # ------------------------------------------------------------------ kinds

    def payload_byte_flip(self, rng: random.Random) -> Mutation:
        body = bytearray(self.payload)
        at = rng.randrange(len(body))
        body[at] ^= rng.randrange(1, 256)
        envelope = self.envelope_with(payload=base64.b64encode(bytes(body)).decode())
        return self.refused("payload-byte-flip", f"byte {at}", _dumps(envelope))

    def signature_byte_flip(self, rng: random.Random) -> Mutation:
        sig = bytearray(base64.b64decode(self.envelope["signatures"][0]["sig"]))
        at = rng.randrange(len(sig))
        sig[at] ^= 1 << rng.randrange(8)
        envelope = self.envelope_with(
            signatures=[
                {**self.envelope["signatures"][0], "sig": base64.b64encode(bytes(sig)).decode()}
            ]
        )
        return self.refused("signature-byte-flip", f"byte {at}", _dumps(envelope))

    def file_byte_flip(self, rng: random.Random) -> Mutation:
        raw = bytearray(self.raw)
        flips = rng.randint(1, 3)
        for _ in range(flips):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return self.same("file-byte-flip", f"{flips} byte(s)", bytes(raw))

    def base64_variant(self, rng: random.Random) -> Mutation:
        member = rng.choice(["payload", "sig"])
        text = (
            self.envelope["payload"]
            if member == "payload"
            else self.envelope["signatures"][0]["sig"]
        )
        variants: list[tuple[str, Callable[[str], str]]] = [
            ("urlsafe", lambda t: t.replace("+", "-").replace("/", "_")),
            ("unpadded", lambda t: t.rstrip("=")),
            ("extra padding", lambda t: t + "="),
            ("double padding", lambda t: t + "=="),
            ("line breaks", lambda t: "\n".join(t[i : i + 76] for i in range(0, len(t), 76))),
            ("spaces", lambda t: " ".join(t[i : i + 4] for i in range(0, len(t), 4))),
            ("leading space", lambda t: " " + t),
            ("lowercase", str.lower),
            ("truncated", lambda t: t[: -rng.randint(1, 8)]),
            ("junk character", lambda t: t[:10] + rng.choice("!*.~\\é") + t[10:]),
            (
                "fullwidth",
                lambda t: (
                    t[:5] + chr(ord(t[5]) + 0xFEE0) + t[6:]
                    if t[5].isalnum()
                    else t[:5] + "＋" + t[6:]
                ),
            ),
            ("inner padding", lambda t: t[:8] + "=" + t[8:]),
            ("standard recoded", lambda t: base64.b64encode(base64.b64decode(t)).decode()),
        ]
        name, change = rng.choice(variants)
        new = change(text)
        if member == "payload":
            envelope = self.envelope_with(payload=new)
        else:
            envelope = self.envelope_with(
                signatures=[{**self.envelope["signatures"][0], "sig": new}]
            )
        return self.same("base64-variant", f"{member}: {name}", _dumps(envelope))

    def payload_type(self, rng: random.Random) -> Mutation:
        choices = [
            "application/json",
            PAYLOAD_TYPE.upper(),
            PAYLOAD_TYPE + " ",
            " " + PAYLOAD_TYPE,
            PAYLOAD_TYPE + "; v=2",
            PAYLOAD_TYPE + "\x00",
            "",
            "application/vnd.in-toto+json",
            PAYLOAD_TYPE.replace("+", "\uff0b"),
            "t" * 100_000,
            "\ud800",
        ]
        value: Any = rng.choice([*choices, None, 1, [], {}, True])
        if rng.random() < 0.3:  # re-signed by the real key under that type: still not a bundle
            payload_type = value if isinstance(value, str) else "application/json"
            try:
                signature = self.sign(self.payload, payload_type=payload_type)
            except UnicodeEncodeError:  # a lone surrogate cannot be signed: not re-signed
                signature = self.envelope["signatures"][0]
            envelope = self.envelope_with(payloadType=payload_type, signatures=[signature])
        else:
            envelope = self.envelope_with(payloadType=value)
        return self.refused("payload-type", f"{str(value)[:30]!r}", _dumps(envelope))

    def envelope_members(self, rng: random.Random) -> Mutation:
        body = _dumps(self.envelope)[:-1]
        choice = rng.randrange(8)
        member = rng.choice(["payload", "payloadType", "signatures"])
        if choice == 0:  # removed
            envelope = _copy(self.envelope)
            del envelope[member]
            raw = _dumps(envelope)
        elif choice == 1:  # added unknown member
            raw = _dumps(
                self.envelope_with(
                    **{rng.choice(["extra", "Payload", "x" * 5000, "payload ", "\u00e9"]): 1}
                )
            )
        elif choice == 2:  # duplicate with the same value, first
            raw = (
                b"{"
                + json.dumps(member).encode()
                + b":"
                + json.dumps(self.envelope[member], separators=(",", ":")).encode()
                + b","
                + body[1:]
                + b"\n"
            )
        elif choice == 3:  # duplicate with another value, last
            raw = body[:-1] + b"," + json.dumps(member).encode() + b':"x"}\n'
        elif choice == 4:  # signature entry with a member added, removed or duplicated
            entry = dict(self.envelope["signatures"][0])
            action = rng.choice(["add", "remove-keyid", "remove-sig", "dup"])
            if action == "add":
                entry["note"] = "x"
                raw = _dumps(self.envelope_with(signatures=[entry]))
            elif action == "dup":
                text = json.dumps(entry, separators=(",", ":"))
                dup = text[:-1] + f',"keyid":"{"0" * 32}"}}'
                raw = body.replace(text.encode(), dup.encode()) + b"\n"
            else:
                del entry[action.split("-")[1]]
                raw = _dumps(self.envelope_with(signatures=[entry]))
        elif choice == 5:  # signatures of the wrong shape or number
            shape = rng.choice(
                [
                    [],
                    {},
                    "x",
                    None,
                    [self.envelope["signatures"][0]] * 5,
                    [1],
                    [[]],
                    [self.envelope["signatures"][0], None],
                ]
            )
            raw = _dumps(self.envelope_with(signatures=shape))
        elif choice == 6:  # the envelope is not an object
            raw = rng.choice([b"[]", b"null", b'"x"', b"1", b"[" + body + b"]", b""])
        else:  # member values of the wrong type
            raw = _dumps(self.envelope_with(**{member: rng.choice([None, 1, True, [], {}])}))
        return self.refused("envelope-members", f"case {choice} {member}", raw)

    def nan_infinity(self, rng: random.Random) -> Mutation:
        token = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"])
        if rng.random() < 0.4 or not self.numbers:  # in the envelope
            raw = _dumps(self.envelope)[:-2] + b',"n":' + token + b"}\n"
            return self.refused("nan-infinity", f"envelope {token.decode()}", raw)
        path = rng.choice(self.numbers)
        data = _copy(self.data)
        _get(data, path[:-1])[path[-1]] = "@@NUMBER@@"
        payload = canonical_bytes(data).replace(b'"@@NUMBER@@"', token, 1)
        return self.resigned("nan-infinity", f"{path} {token.decode()}", payload)

    def huge_number(self, rng: random.Random) -> Mutation:
        path = rng.choice(self.numbers + [("source", "config_version")] * 4)
        token = rng.choice(HUGE_NUMBERS)
        data = _copy(self.data)
        _get(data, path[:-1])[path[-1]] = "@@NUMBER@@"
        payload = canonical_bytes(data).replace(b'"@@NUMBER@@"', token, 1)
        return self.resigned("huge-number", f"{path} {token[:20].decode()}", payload)

    def deep_nesting(self, rng: random.Random) -> Mutation:
        depth = rng.choice([40, 62, 63, 64, 65, 100, 1000, 100_000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        nest = opener * depth + b"1" + closer * depth
        if rng.random() < 0.3:  # in the envelope
            raw = _dumps(self.envelope)[:-2] + b',"deep":' + nest + b"}\n"
            return self.refused("deep-nesting", f"envelope {depth}", raw)
        path = rng.choice(self.containers[1:] or [("config",)])
        data = _copy(self.data)
        target = _get(data, path)
        if isinstance(target, dict):
            target["@@DEEP@@"] = 0
            marker = b'"@@DEEP@@":0'
            replacement = b'"deep":' + nest
        else:
            target.append("@@DEEP@@")
            marker, replacement = b'"@@DEEP@@"', nest
        payload = canonical_bytes(data).replace(marker, replacement, 1)
        return self.resigned("deep-nesting", f"{path} {depth}", payload)

    def oversize(self, rng: random.Random) -> Mutation:
        where = rng.choice(["padding", "member", "payload"])
        if where == "padding":
            raw = _dumps(self.envelope)[:-1] + b" " * (MAX_BYTES + 1 - len(self.raw) + 1)
            return self.refused("oversize", "whitespace padding", raw)
        if where == "member":
            envelope = self.envelope_with(extra="x" * MAX_BYTES)
            return self.refused("oversize", "a 16 MiB member", _dumps(envelope))
        data = _copy(self.data)
        data["padding"] = "x" * (MAX_BYTES // 4 * 3)  # base64 makes the file > 16 MiB
        return self.resigned("oversize", "a 12 MiB payload", canonical_bytes(data))

    def escapes(self, rng: random.Random) -> Mutation:
        if rng.random() < 0.4:  # JSON escapes in the envelope's strings: the same text
            text = self.envelope["payload"]
            at = rng.randrange(len(text))
            escaped = text[:at] + f"\\u{ord(text[at]):04x}" + text[at + 1 :]
            body = _dumps(self.envelope).replace(text.encode(), escaped.encode(), 1)
            return self.same("escapes", f"envelope payload char {at}", body)
        body = self.payload
        choice = rng.randrange(4)
        if choice == 0:  # a character of a string escaped
            at = rng.choice([i for i in range(len(body)) if body[i : i + 1].isalpha()])
            payload = body[:at] + b"\\u%04x" % body[at] + body[at + 1 :]
        elif choice == 1:
            payload = body.replace(b"/", b"\\/", 1) if b"/" in body else body + b" "
        elif choice == 2:  # non-ASCII text escaped (canonical JSON writes it raw)
            at = body.find("チ".encode())
            payload = (body[:at] + b"\\u30c1" + body[at + 3 :]) if at >= 0 else body + b"\n"
        else:  # control character raw in a string
            path = rng.choice(self.strings)
            data = _copy(self.data)
            _get(data, path[:-1])[path[-1]] = "@@TEXT@@"
            payload = canonical_bytes(data).replace(b"@@TEXT@@", b"a\x01b\tc", 1)
        return self.resigned("escapes", f"case {choice}", payload)

    def surrogates(self, rng: random.Random) -> Mutation:
        lone = rng.choice(["\\ud800", "\\udfff", "\\udc00\\ud800", "\\ud83d"])
        where = rng.randrange(4)
        if where == 0:  # in a keyid
            entry = {**self.envelope["signatures"][0], "keyid": "@@LONE@@"}
            raw = _dumps(self.envelope_with(signatures=[entry])).replace(b"@@LONE@@", lone.encode())
            return self.refused("surrogates", f"keyid {lone}", raw)
        if where == 1:  # in an unknown envelope member's name
            raw = _dumps(self.envelope)[:-2] + b',"' + lone.encode() + b'":1}\n'
            return self.refused("surrogates", f"member name {lone}", raw)
        if where == 2:  # raw surrogate bytes (CESU-8) in the file
            raw = _dumps(self.envelope)[:-2] + b',"x":"\xed\xa0\x80"}\n'
            return self.refused("surrogates", "CESU-8 bytes", raw)
        path = rng.choice(self.strings)
        data = _copy(self.data)
        _get(data, path[:-1])[path[-1]] = "@@TEXT@@"
        payload = canonical_bytes(data).replace(b"@@TEXT@@", lone.encode(), 1)
        return self.resigned("surrogates", f"{path} {lone}", payload)

    def bom_encoding(self, rng: random.Random) -> Mutation:
        text = self.raw.decode("utf-8")
        choice = rng.choice(
            [
                "utf-8-sig",
                "utf-16",
                "utf-16-le",
                "utf-16-be",
                "utf-32",
                "utf-32-le",
                "bom-after-space",
                "latin-1",
            ]
        )
        if choice == "bom-after-space":
            raw = b" \xef\xbb\xbf" + self.raw
        elif choice == "latin-1":
            raw = text.encode("latin-1", "replace")  # the same file: its text is ASCII
            return self.same("bom-encoding", choice, raw)
        else:
            raw = text.encode(choice)
        return self.refused("bom-encoding", choice, raw)

    def trailing_garbage(self, rng: random.Random) -> Mutation:
        tail = rng.choice(
            [
                b"x",
                b"}",
                b"\n\n",
                b" ",
                b"\x00",
                b"{}",
                self.raw,
                b"\xff",
                b"// comment",
                b",",
                b"\r\n",
                b"\t",
                b"\x1a",
            ]
        )
        raw = self.raw + tail
        return self.same("trailing-garbage", repr(tail[:10]), raw)

    def keyid_swap(self, rng: random.Random) -> Mutation:
        mine = self.envelope["signatures"][0]["keyid"]
        choice = rng.choice(
            [
                key_id(self.other.public_key()),
                key_id(self.stranger.public_key()),
                mine.upper(),
                mine[:-1],
                mine + "0",
                " " + mine,
                mine[:31] + "\u0660",
                "0" * 32,
                "k" * 100_000,
                "../../etc/passwd",
                "' OR 1=1 --",
                "%s",
                "",
            ]
        )
        entry = {**self.envelope["signatures"][0], "keyid": choice}
        return self.refused(
            "keyid-swap", repr(choice[:40]), _dumps(self.envelope_with(signatures=[entry]))
        )

    def foreign_signature(self, rng: random.Random) -> Mutation:
        genuine = self.envelope["signatures"][0]
        choice = rng.randrange(7)
        if choice == 0:  # signed only by a stranger
            sigs = [self.sign(self.payload, self.stranger)]
        elif choice == 1:  # signed only by another known tenant
            sigs = [self.sign(self.payload, self.other)]
        elif choice == 2:  # stranger first, then the genuine signature
            sigs = [self.sign(self.payload, self.stranger), genuine]
        elif choice == 3:  # another tenant's valid signature first
            sigs = [self.sign(self.payload, self.other), genuine]
        elif choice == 4:  # genuine first, then the other tenant's
            sigs = [genuine, self.sign(self.payload, self.other)]
        elif choice == 5:  # the genuine signature twice
            sigs = [genuine, genuine]
        else:  # the stranger's signature under the publisher's key id
            sigs = [{**self.sign(self.payload, self.stranger), "keyid": genuine["keyid"]}]
        raw = _dumps(self.envelope_with(signatures=sigs))
        if choice in (0, 1, 6):
            return self.refused("foreign-signature", f"case {choice}", raw)
        return self.same("foreign-signature", f"case {choice}", raw)

    def resigned_payload(self, rng: random.Random) -> Mutation:
        data = _copy(self.data)
        choice = rng.randrange(6)
        if choice == 0:  # a member removed
            path = rng.choice(
                [p for p, _ in self.paths if p and isinstance(_get(self.data, p[:-1]), dict)]
            )
            del _get(data, path[:-1])[path[-1]]
        elif choice == 1:  # an unknown member added
            path = rng.choice([p for p, v in self.paths if isinstance(v, dict)])
            _get(data, path)[rng.choice(["extra", "id", "__proto__", "x" * 3000])] = 1
        elif choice == 2:  # a value of another type
            path = rng.choice([p for p, _ in self.paths if p])
            _get(data, path[:-1])[path[-1]] = rng.choice(
                [None, 0, -1, 1.5, True, "", "x", [], {}, [None], {"a": 1}]
            )
        elif choice == 3:  # hostile text in a string
            path = rng.choice(self.strings)
            _get(data, path[:-1])[path[-1]] = rng.choice(HOSTILE_TEXT)
        elif choice == 4:  # an item of a list duplicated or dropped
            lists = [p for p, v in self.paths if isinstance(v, list) and v]
            path = rng.choice(lists)
            items = _get(data, path)
            if rng.random() < 0.5:
                items.append(_copy(items[0]))
            else:
                items.pop(rng.randrange(len(items)))
        else:  # the metadata changed
            member = rng.choice(
                [
                    "bundle_id",
                    "created_at",
                    "expires_at",
                    "format",
                    "format_version",
                    "audience",
                    "publisher",
                ]
            )
            data[member] = rng.choice(
                [
                    "b_" + "0" * 26,
                    "2027-02-30T00:00:00Z",
                    None,
                    2,
                    "9999-12-31T23:59:59Z",
                    {"key_id": "0" * 32},
                ]
            )
        try:
            payload = canonical_bytes(data)
        except (TypeError, ValueError):
            payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        return self.resigned("resigned-payload", f"case {choice}", payload)

    # ------------------------------------------------------------------ the generator

    def generate(
        self, *, seed: int, count: int, skip: frozenset[str] = frozenset()
    ) -> Iterator[Mutation]:
        """``count`` mutations, kinds in turn (every prefix covers every kind), each
        drawn from its own random stream so that the n-th mutation depends only on
        ``seed`` and n. ``oversize`` (16 MiB each) comes once in 25 rounds."""
        kinds = [k for k in self.kinds if k not in skip]
        made = 0
        round_ = 0
        while made < count:
            for kind in kinds:
                if made >= count:
                    return
                if kind == "oversize" and round_ % 25:
                    continue
                rng = random.Random(f"{seed}/{round_}/{kind}")
                yield self.kinds[kind](rng)
                made += 1
            round_ += 1
