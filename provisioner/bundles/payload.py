"""The bundle payload: what a source tenant signs and a target tenant reads.

    {"format": "provisioner.bundle", "format_version": 1, "bundle_id": "...",
     "created_at": "...Z", "expires_at": "...Z",
     "source": {"tenant": "...", "name": "...", "config_version": 3, "config_digest": "sha256:..."},
     "publisher": {"key_id": "..."},
     "audience": {"copy_key": "<selector>", "binding": "<hex>", "tenant": "..."} | null,
     "config": { ...some or all configuration sections... }}

``read_bundle`` is the only way in: verify, then parse strictly, then validate.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from provisioner.bundles import strict_json
from provisioner.bundles.envelope import KeyResolver, sign_envelope, verify_envelope
from provisioner.bundles.signing import key_id
from provisioner.canonical import canonical_bytes, sha256_hex
from provisioner.clock import format_instant, parse_instant
from provisioner.config.document import SECTION_NAMES, ConfigSections
from provisioner.config.fast import dict_validator
from provisioner.config.validate import format_problems, normalized_sections
from provisioner.errors import BundleRejected, ValidationFailed, excerpt

FORMAT = "provisioner.bundle"
FORMAT_VERSION = 1
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"

#: The largest integer every backend stores in the columns a payload's integers go
#: to (PostgreSQL ``INTEGER``: ``transfers.source_version``).
MAX_INT32 = 2**31 - 1


def _real_instant(text: str) -> str:
    """An instant that is a date: parsed here, once, for receive and ``bundle verify``.

    The pattern admits ASCII digits only (``\\d`` would admit fullwidth ones);
    ``2027-02-30T00:00:00Z`` matches it and is refused here.
    """
    try:
        parse_instant(text)
    except ValueError:
        raise ValueError("is not a real UTC instant (no such date or time)") from None
    return text


Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Instant = Annotated[
    str,
    Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"),
    AfterValidator(_real_instant),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Source(_Strict):
    tenant: Slug
    name: str = Field(min_length=1, max_length=200)
    config_version: int = Field(ge=1, le=MAX_INT32)
    config_digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class Publisher(_Strict):
    key_id: str = Field(pattern=r"^[0-9a-f]{32}$")


class Audience(_Strict):
    copy_key: str = Field(pattern=r"^[0-9a-z]{8,16}$", description="the copy key's selector")
    binding: str = Field(pattern=r"^[0-9a-f]{64}$", description="proof the sender held the key")
    tenant: Slug | None = None


class BundlePayload(_Strict):
    format: Literal["provisioner.bundle"]
    format_version: Literal[1]
    bundle_id: str = Field(pattern=r"^b_[0-9a-z]{26}$")
    created_at: Instant
    expires_at: Instant
    source: Source
    publisher: Publisher
    audience: Audience | None
    config: dict[str, Any] = Field(description="configuration sections, validated separately")


class _PayloadContract(BundlePayload):
    """The whole payload with its configuration, for one-pass validation (fast path)."""

    config: ConfigSections  # type: ignore[assignment]


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature verified and whose payload is valid."""

    payload: BundlePayload
    config: dict[str, Any]  # the normalised, validated configuration sections
    payload_bytes: bytes
    key_id: str
    envelope: bytes
    config_json: bytes  # RFC 8785 form of ``config``
    #: ``payload_bytes[start:end] == config_json`` (a canonical payload), else None
    config_span: tuple[int, int] | None = None
    #: ``envelope[start:end] == base64(payload_bytes)``, else None
    payload_span: tuple[int, int] | None = None

    @property
    def sections(self) -> tuple[str, ...]:
        return tuple(name for name in SECTION_NAMES if name in self.config)

    @cached_property
    def digest(self) -> str:
        """``sha256:<hex>`` of the exact signed payload bytes."""
        return "sha256:" + sha256_hex(self.payload_bytes)

    @cached_property
    def config_digest(self) -> str:
        """``sha256:<hex>`` of ``config_json`` (a whole document's: the version's digest)."""
        return "sha256:" + sha256_hex(self.config_json)

    @property
    def expires_at(self) -> datetime:
        return parse_instant(self.payload.expires_at)


def new_bundle_id() -> str:
    return "b_" + "".join(secrets.choice(_CROCKFORD) for _ in range(26))


def build_bundle(
    *,
    config: Mapping[str, Any] | bytes,
    source: Source,
    signer: Ed25519PrivateKey,
    created_at: datetime,
    expires_at: datetime,
    audience: Audience | None = None,
    bundle_id: str | None = None,
) -> bytes:
    """Canonical payload, signed, wrapped in a DSSE envelope (the bytes of a bundle file).

    ``config`` must already be valid configuration data (it comes from a stored
    document), so it is embedded as is rather than re-validated. Given as bytes it
    must be that data's RFC 8785 form (a stored version is kept that way): it is
    spliced into the payload without being parsed and serialised again.
    """
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bundle_id": bundle_id or new_bundle_id(),
        "created_at": format_instant(created_at),
        "expires_at": format_instant(expires_at),
        "source": source.model_dump(mode="json"),
        "publisher": {"key_id": key_id(signer.public_key())},
        "audience": audience.model_dump(mode="json") if audience else None,
        "config": 0 if isinstance(config, bytes) else dict(config),
    }
    body = canonical_bytes(payload)
    if isinstance(config, bytes):
        # '"config":0' occurs once: inside JSON strings every quote is escaped
        body = body.replace(b'"config":0', b'"config":' + config, 1)
    return sign_envelope(body, signer)


def _check_format(data: Any) -> None:
    if not isinstance(data, dict):
        raise BundleRejected("bundle payload is not a JSON object")
    if data.get("format") != FORMAT:
        raise BundleRejected(
            f"bundle payload format is {excerpt(data.get('format'))}, expected {FORMAT!r}"
        )
    version = data.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:  # true == 1 in Python
        raise BundleRejected(
            f"unknown bundle format version {excerpt(version)}: this provisioner reads version "
            f"{FORMAT_VERSION}",
            hint="upgrade provisioner on the receiving side, or export with a matching version",
        )


def _invalid(payload: bytes, message: str, problems: list[str]) -> BundleRejected:
    """The rejection for a payload that failed validation (depth is diagnosed first)."""
    deeper = strict_json.diagnose(payload, what="bundle payload")
    if "deeper" in deeper.message:
        return deeper
    shown = "; ".join(problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return BundleRejected(f"{message}: {shown}{more}")


def _validated(payload: bytes, contract: type[BaseModel]) -> dict[str, Any] | None:
    """``payload`` parsed and validated by ``contract`` in one pass, if it is canonical.

    pydantic-core parses and validates the bytes into normalised data; if that data
    serialises back to exactly the given bytes, they were canonical (hence free of
    duplicate keys, which the parser would have collapsed) and had every default
    spelled out. Anything else: None.
    """
    try:
        data: dict[str, Any] = dict_validator(contract).validate_json(payload)
    except ValidationError:
        return None
    if type(data["format_version"]) is not int:  # true passes Literal[1]: the slow path says no
        return None
    data["config"] = {k: v for k, v in data["config"].items() if v is not None}
    try:
        same = canonical_bytes(data) == payload
    except (TypeError, ValueError):
        return None
    return data if same else None


def _config_span(payload: bytes) -> tuple[int, int] | None:
    """Where the configuration's bytes sit in a canonical payload: ``(start, end)``.

    The config object runs from its key to the next key, "created_at" (keys are
    sorted; neither key can occur inside it, where every quote is escaped, nor
    elsewhere, the model having no other such member: the search for the end runs
    back from the payload's end, which is a few hundred bytes away). For any other
    payload the span found means nothing until the caller has checked the payload.
    """
    start = payload.find(b'"config":')
    if start < 0:
        return None
    start += len(b'"config":')
    end = payload.rfind(b',"created_at":"', start)
    return (start, end) if end >= 0 else None


def _read_fast(payload: bytes) -> tuple[dict[str, Any], tuple[int, int]] | None:
    """Parse and validate in one pass when the payload is exactly what an exporter makes.

    The payload validated whole (:func:`_validated` with the configuration's contract).
    Anything else (None) takes the slow path, which says precisely what is wrong or
    accepts a valid but terser payload.
    """
    data = _validated(payload, _PayloadContract)
    if data is None:
        return None
    span = _config_span(payload)
    assert span is not None  # a canonical payload with a config member has both keys
    return data, span


# --------------------------------------------------------------------------- known content

#: configurations this process validated in a payload (:func:`_read_fast`): digest of
#: their canonical bytes -> their normalised data (shared, read-only), newest last
_VALIDATED: OrderedDict[str, dict[str, Any]] = OrderedDict()
_VALIDATED_LOCK = threading.Lock()
#: how many validated configurations are remembered (the same objects as the parsed
#: documents the services keep: a template received by several tenants, or again)
VALIDATED_LIMIT = 8


def _remember(config_digest: str, config: dict[str, Any]) -> None:
    with _VALIDATED_LOCK:
        _VALIDATED[config_digest] = config
        _VALIDATED.move_to_end(config_digest)
        while len(_VALIDATED) > VALIDATED_LIMIT:
            _VALIDATED.popitem(last=False)


def forget_validated() -> None:
    """Forget which configurations were validated (tests, benchmarks)."""
    with _VALIDATED_LOCK:
        _VALIDATED.clear()


def _read_known(payload: bytes, span: tuple[int, int], config_digest: str) -> dict[str, Any] | None:
    """The fast path for a configuration this process already validated (see _VALIDATED).

    A payload is ``head + config + tail``. When ``config`` has the digest of bytes
    :func:`_read_fast` validated (canonical, normalised sections), only the rest needs
    checking: ``head + {} + tail`` must itself pass :func:`_validated` (the header
    rules, canonical form). Then the payload is exactly the canonical form of that
    header with this configuration in place of ``{}`` -- what :func:`_read_fast` would
    accept, giving the same data -- because ``head`` ends with the first ``"config":``
    of the payload, which in a canonical header is its top-level key (no other member
    of the header model is named so, and inside a string every quote is escaped).
    Anything else (None) takes the full path: its answer, whatever it is, stands.
    ``span``: :func:`_config_span` of the payload; ``config_digest``: of those bytes.
    """
    with _VALIDATED_LOCK:
        config = _VALIDATED.get(config_digest)
    if config is None:
        return None
    start, end = span
    data = _validated(payload[:start] + b"{}" + payload[end:], BundlePayload)
    if data is None:
        return None
    data["config"] = config
    return data


def read_bundle(raw: bytes, resolve: KeyResolver) -> VerifiedBundle:
    """Verify, then strictly parse, then validate. Raises BundleRejected."""
    envelope = verify_envelope(raw, resolve)
    strict_json.check_size(envelope.payload, "bundle payload")
    # the configuration's bytes and digest, if the payload is canonical (hashed once: the
    # digest names a configuration validated before, and is the bundle's config_digest)
    span = _config_span(envelope.payload)
    config_digest = None
    known = None
    if span is not None:
        config_digest = "sha256:" + sha256_hex(envelope.payload[span[0] : span[1]])
        known = _read_known(envelope.payload, span, config_digest)
    fast = (known, span) if known is not None else _read_fast(envelope.payload)
    config_span = None
    if fast is not None:
        data, config_span = fast
        assert config_span is not None
        config_json = envelope.payload[config_span[0] : config_span[1]]
        config = data["config"]
        payload = BundlePayload.model_validate(data)
    else:
        payload, config = _read_slow(envelope.payload)
        config_json = canonical_bytes(config)
    signer = payload.publisher.key_id  # of two valid signatures, the publisher's counts
    if signer not in envelope.key_ids:
        raise BundleRejected(
            "bundle payload names publisher key "
            f"{signer} but is signed by {', '.join(envelope.key_ids)}"
        )
    if not any(name in config for name in SECTION_NAMES):
        raise BundleRejected("bundle carries no configuration section")
    bundle = VerifiedBundle(
        payload,
        config,
        envelope.payload,
        signer,
        raw,
        config_json,
        config_span,
        envelope.payload_span,
    )
    if fast is not None:  # config_json is the span hashed above: the cached property takes it
        assert config_digest is not None
        assert config_span == span
        vars(bundle)["config_digest"] = config_digest
        if known is None:
            _remember(config_digest, config)
    return bundle


# --------------------------------------------------------------------------- storing the file


def split_file(bundle: VerifiedBundle) -> tuple[bytes, dict[str, Any] | None]:
    """The bundle file to store beside ``bundle.config_json``, without repeating it.

    A bundle as an exporter writes it carries its configuration verbatim inside the
    payload, and the payload verbatim (base64) inside the file. Then the file is
    stored with its payload cut out, plus a *frame*: where the payload goes back in
    (``at``) and the payload's text before and after the configuration (``head``,
    ``tail``). :func:`join_file` rebuilds the exact bytes. Any other file: (the file,
    None).
    """
    if bundle.config_span is None or bundle.payload_span is None:
        return bundle.envelope, None
    (start, end), (at, stop) = bundle.config_span, bundle.payload_span
    payload = bundle.payload_bytes
    frame = {
        "at": at,
        "head": payload[:start].decode("utf-8"),
        "tail": payload[end:].decode("utf-8"),
    }
    return bundle.envelope[:at] + bundle.envelope[stop:], frame


def join_file(stored: bytes, frame: Mapping[str, Any] | None, config_json: bytes) -> bytes:
    """The exact bundle file, from what :func:`split_file` stored."""
    if frame is None:
        return stored
    payload = frame["head"].encode("utf-8") + config_json + frame["tail"].encode("utf-8")
    at = frame["at"]
    return stored[:at] + base64.b64encode(payload) + stored[at:]


def _read_slow(payload_bytes: bytes) -> tuple[BundlePayload, dict[str, Any]]:
    """Step by step, with a precise reason for whatever is wrong."""
    data = strict_json.loads_canonical(payload_bytes, what="bundle payload")
    _check_format(data)
    try:
        payload = BundlePayload.model_validate(data)
    except ValidationError as exc:
        raise _invalid(
            payload_bytes, "bundle payload does not match the bundle schema", format_problems(exc)
        ) from None
    try:
        config = normalized_sections(payload.config, what="bundle configuration")
    except ValidationFailed as exc:
        raise _invalid(payload_bytes, "bundle configuration is invalid", exc.problems) from None
    return payload, config
