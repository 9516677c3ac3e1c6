"""docs/bundle-format.md stays true: its verification recipes verify real bundles.

Runs ``docs/verify-bundle.sh`` (python3 + OpenSSL) and the standalone Python
recipe copied out of the document itself against a bundle made by
``build_bundle`` (the code ``provisioner bundle export`` uses), and checks
that both refuse a tampered payload, another key and another payload type.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.bundles.envelope import MAX_SIGNATURES, PAYLOAD_TYPE, sign_envelope
from provisioner.bundles.payload import (
    Audience,
    BundlePayload,
    Publisher,
    Source,
    build_bundle,
    read_bundle,
)
from provisioner.bundles.signing import key_id, public_pem
from provisioner.bundles.strict_json import MAX_BYTES
from provisioner.canonical import canonical_bytes, digest
from provisioner.cli.main import cli
from provisioner.clock import parse_instant
from provisioner.config.defaults import default_document
from provisioner.config.document import SECTION_NAMES
from provisioner.errors import BundleRejected
from provisioner.security import copykey

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bundle-format.md"
SCRIPT = ROOT / "docs" / "verify-bundle.sh"


def _openssl_has_rawin() -> bool:
    if shutil.which("openssl") is None:
        return False
    help_text = subprocess.run(["openssl", "pkeyutl", "-help"], capture_output=True, text=True)
    return "-rawin" in help_text.stdout + help_text.stderr


needs_openssl3 = pytest.mark.skipif(
    not _openssl_has_rawin(), reason="needs OpenSSL 3 (pkeyutl -rawin)"
)


class Files:
    def __init__(self, tmp_path: Path) -> None:
        signer = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
        self.key_id = key_id(signer.public_key())
        data = default_document().to_data()
        raw = build_bundle(
            config=data,
            source=Source(
                tenant="partner",
                name="パートナー株式会社",
                config_version=1,
                config_digest=digest(data),
            ),
            signer=signer,
            created_at=parse_instant("2026-11-23T09:00:00Z"),
            expires_at=parse_instant("2026-11-24T09:00:00Z"),
        )
        self.bundle = tmp_path / "bundle.json"
        self.bundle.write_bytes(raw)
        self.pem = tmp_path / "partner.pem"
        self.pem.write_text(public_pem(signer.public_key()))
        self.other_pem = tmp_path / "other.pem"
        self.other_pem.write_text(public_pem(other.public_key()))

        envelope = json.loads(raw)
        payload = base64.b64decode(envelope["payload"])
        changed = payload.replace("チェック1".encode(), "チェックX".encode(), 1)
        assert changed != payload
        self.tampered = tmp_path / "tampered.json"
        self.tampered.write_text(
            json.dumps({**envelope, "payload": base64.b64encode(changed).decode()})
        )
        self.other_type = tmp_path / "othertype.json"
        self.other_type.write_text(
            json.dumps({**envelope, "payloadType": "application/vnd.in-toto+json"})
        )


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def _script(bundle: Path, pem: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPT), str(bundle), str(pem)], capture_output=True, text=True, timeout=60
    )


@needs_openssl3
def test_verify_bundle_sh_accepts_a_real_bundle(files: Files) -> None:
    result = _script(files.bundle, files.pem)
    assert result.returncode == 0, result.stderr
    assert f"public key id:  {files.key_id}" in result.stdout
    assert "Signature Verified Successfully" in result.stdout


@needs_openssl3
def test_verify_bundle_sh_refuses_a_tampered_payload(files: Files) -> None:
    result = _script(files.tampered, files.pem)
    assert result.returncode != 0
    assert "Signature Verified Successfully" not in result.stdout


@needs_openssl3
def test_verify_bundle_sh_refuses_another_key(files: Files) -> None:
    result = _script(files.bundle, files.other_pem)
    assert result.returncode != 0
    assert "no signature by key" in result.stderr


@needs_openssl3
def test_verify_bundle_sh_refuses_another_payload_type(files: Files) -> None:
    result = _script(files.other_type, files.pem)
    assert result.returncode != 0
    assert "expected 'application/vnd.provisioner.bundle+json'" in result.stderr


def _documented_python_recipe() -> str:
    """The code block of section "(c)" of docs/bundle-format.md, as written there."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### (c)", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "docs/bundle-format.md lost its standalone Python recipe"
    return match.group(1)


def _run_recipe(tmp_path: Path, bundle: Path, pem: Path) -> subprocess.CompletedProcess[str]:
    recipe = tmp_path / "verify_bundle.py"
    recipe.write_text(_documented_python_recipe(), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(recipe), str(bundle), str(pem)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_documented_python_recipe_verifies_a_real_bundle(files: Files, tmp_path: Path) -> None:
    result = _run_recipe(tmp_path, files.bundle, files.pem)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"verified by {files.key_id} bundle b_")


def test_documented_python_recipe_refuses_tampering_and_other_keys(
    files: Files, tmp_path: Path
) -> None:
    tampered = _run_recipe(tmp_path, files.tampered, files.pem)
    assert tampered.returncode != 0
    assert "InvalidSignature" in tampered.stderr
    other_key = _run_recipe(tmp_path, files.bundle, files.other_pem)
    assert other_key.returncode != 0
    assert "no signature by key" in other_key.stderr
    other_type = _run_recipe(tmp_path, files.other_type, files.pem)
    assert other_type.returncode != 0


# --------------------------------------------------------------------------- section 2


def _section(title: str) -> str:
    """The text of the ``## title`` section of docs/bundle-format.md."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _table_members(section: str) -> list[str]:
    """First-column `names` of the markdown table rows of ``section``."""
    return re.findall(r"^\| `([A-Za-z_]+)` \|", section, re.M)


def test_documented_payload_members_are_exactly_the_models_fields() -> None:
    section = _section("2. The payload")
    assert sorted(_table_members(section)) == sorted(BundlePayload.model_fields)
    for model in (Source, Publisher, Audience):
        for name in model.model_fields:
            assert f"`{name}`" in section, f"{model.__name__}.{name} is not documented"


def test_documented_configuration_sections_are_exactly_the_models_sections() -> None:
    row = next(
        line for line in _section("2. The payload").splitlines() if line.startswith("| `config` |")
    )
    listed = re.findall(r"`([a-z_]+)`", row.split("one or more of", 1)[1].split(")", 1)[0])
    assert tuple(listed) == SECTION_NAMES


def test_documented_envelope_members_are_exactly_what_the_parser_accepts() -> None:
    section = _section("1. The envelope")
    members = set(_table_members(section)) | set(
        re.findall(r"^\| `signatures\[\]\.([a-z]+)` \|", section, re.M)
    )
    assert members == {"payload", "payloadType", "signatures", "keyid", "sig"}
    assert f"at most {MAX_SIGNATURES}" in section
    assert f"always `{PAYLOAD_TYPE}`" in section


def test_pae_example_lengths_are_right() -> None:
    assert f"DSSEv1 {len(PAYLOAD_TYPE.encode())} {PAYLOAD_TYPE} " in _section("1. The envelope")


# --------------------------------------------------------------------------- section 4


def test_binding_recipe_prints_the_documented_binding_and_matches_the_code() -> None:
    """The hand computation of section 4 prints what the page says it prints, which is
    what ``CopyKey.binding`` computes and the binding of the example payload."""
    section = _section("4. Audience and the copy-key binding")
    match = re.search(r"\$ python3 - <<'EOF'\n(.*?)EOF\n(\S+)\n", section, re.S)
    assert match is not None, "section 4 lost its binding recipe"
    script, printed = match.group(1), match.group(2)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == printed
    secret = re.search(r'secret = "([0-9a-z]{32})"', script)
    fields = re.search(
        r'"provisioner/copy-key-binding/v1\|(b_[0-9a-z]{26})"\s*"\|([0-9a-f]{32})\|'
        r'([a-z0-9-]+)"',
        script,
    )
    assert secret is not None
    assert fields is not None
    key = copykey.CopyKey("0" * 10, secret.group(1))
    assert (
        key.binding(
            fields.group(1), publisher_key_id=fields.group(2), source_tenant=fields.group(3)
        )
        == printed
    )
    assert f'"binding": "{printed}"' in _section("2. The payload")


# --------------------------------------------------------------------------- section 5


def _signer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def _stranger() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _genuine() -> tuple[dict[str, Any], dict[str, Any]]:
    """A genuine bundle (envelope, payload) signed by ``_signer()``."""
    data = default_document().to_data()
    raw = build_bundle(
        config=data,
        source=Source(
            tenant="partner",
            name="パートナー株式会社",
            config_version=1,
            config_digest=digest(data),
        ),
        signer=_signer(),
        created_at=parse_instant("2026-11-23T09:00:00Z"),
        expires_at=parse_instant("2026-11-24T09:00:00Z"),
    )
    envelope = json.loads(raw)
    return envelope, json.loads(base64.b64decode(envelope["payload"]))


def _env(envelope: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**envelope, **changes}).encode()


def _signed(payload: bytes, key: Ed25519PrivateKey | None = None) -> bytes:
    return sign_envelope(payload, key or _signer())


def _changed(change: Callable[[dict[str, Any]], None]) -> bytes:
    _, payload = _genuine()
    change(payload)
    return _signed(canonical_bytes(payload))


def _replaced(old: bytes, new: bytes) -> bytes:
    _, payload = _genuine()
    body = canonical_bytes(payload)
    assert old in body
    return _signed(body.replace(old, new, 1))


DEEP = 62  # payload (1) > config (2) > settings (3) > news: 62 lists make 65 levels


def _cases() -> dict[str, Callable[[], bytes]]:
    envelope, _ = _genuine()
    first = envelope["signatures"][0]
    payload = base64.b64decode(envelope["payload"])
    return {
        "oversize": lambda: b" " * (MAX_BYTES + 1),
        "not-an-object": lambda: b"[]",
        "envelope-duplicate": lambda: b'{"payloadType":"a","payloadType":"b"}',
        "envelope-nan": lambda: b'{"payload":NaN}',
        "envelope-deep": lambda: b'{"a":' * 65 + b"1" + b"}" * 65,
        "envelope-unknown": lambda: _env(envelope, extra=1),
        "utf-16": lambda: _env(envelope).decode().encode("utf-16-le"),
        "bom": lambda: b"\xef\xbb\xbf" + _env(envelope),
        "keyid": lambda: _env(envelope, signatures=[{**first, "keyid": "\ud800"}]),
        "payload-type": lambda: _env(envelope, payloadType="application/vnd.in-toto+json"),
        "base64": lambda: _env(envelope, payload="not base64!"),
        "no-signature": lambda: _env(envelope, signatures=[]),
        "five-signatures": lambda: _env(envelope, signatures=[first] * 5),
        "signature-entry": lambda: _env(envelope, signatures=[{**first, "note": "x"}]),
        "unknown-key": lambda: _signed(payload, _stranger()),
        "tampered": lambda: _env(
            envelope,
            payload=base64.b64encode(
                payload.replace("チェック1".encode(), "チェックX".encode(), 1)
            ).decode(),
        ),
        "non-canonical": lambda: _signed(json.dumps(json.loads(payload)).encode()),
        "payload-duplicate": lambda: _replaced(b'{"audience"', b'{"format":"x","audience"'),
        "payload-nan": lambda: _replaced(b'"recent_customers":10', b'"recent_customers":NaN'),
        "payload-infinity": lambda: _replaced(
            b'"recent_customers":10', b'"recent_customers":Infinity'
        ),
        "big-integer": lambda: _replaced(
            b'"recent_customers":10', b'"recent_customers":99999999999999999999999'
        ),
        "lone-surrogate": lambda: _replaced(b'"news":""', b'"news":"\\ud800"'),
        "payload-deep": lambda: _replaced(b'"news":""', b'"news":' + b"[" * DEEP + b"]" * DEEP),
        "format": lambda: _changed(lambda p: p.update(format="provisioner.other")),
        "format-version": lambda: _changed(lambda p: p.update(format_version=2)),
        "unknown-member": lambda: _changed(lambda p: p.update(comment="hi")),
        "no-such-date": lambda: _changed(lambda p: p.update(expires_at="2027-02-30T00:00:00Z")),
        "config-version": lambda: _changed(lambda p: p["source"].update(config_version=2**31)),
        "publisher": lambda: _changed(lambda p: p.update(publisher={"key_id": "0" * 32})),
        "unknown-section": lambda: _changed(lambda p: p["config"].update(colors=[])),
        "schema-version": lambda: _changed(lambda p: p["config"].update(schema_version=2)),
        "no-section": lambda: _changed(lambda p: p.update(config={"schema_version": 1})),
    }


CASES = sorted(_cases())


@pytest.mark.parametrize("case", CASES)
def test_strict_parsing_rule_is_refused_with_the_documented_message(case: str) -> None:
    """Every rule of section 5 refuses with exactly the message the table quotes."""
    raw = _cases()[case]()
    public = _signer().public_key()
    with pytest.raises(BundleRejected) as caught:
        read_bundle(raw, {key_id(public): public}.get)
    message = caught.value.message
    assert f"`{message}`" in _section("5. Strict parsing rules"), (
        f"the strict-parsing table does not quote the real message: {message}"
    )


def test_every_message_of_the_strict_parsing_table_is_produced_by_a_case() -> None:
    """The converse: the table quotes no message that the code does not produce."""
    public = _signer().public_key()
    produced = set()
    for make in _cases().values():
        with pytest.raises(BundleRejected) as caught:
            read_bundle(make(), {key_id(public): public}.get)
        produced.add(caught.value.message)
    rows = [
        line
        for line in _section("5. Strict parsing rules").splitlines()
        if line.startswith("| ") and not line.startswith("| rule")
    ]
    quoted = {m for row in rows for m in re.findall(r"`([^`]+)`", row.rsplit(" | ", 1)[1])}
    assert quoted <= produced, quoted - produced


def test_a_genuine_bundle_passes_every_rule() -> None:
    envelope, _ = _genuine()
    public = _signer().public_key()
    assert read_bundle(_env(envelope), {key_id(public): public}.get).key_id == key_id(public)


def test_format_version_true_is_refused() -> None:
    public = _signer().public_key()
    with pytest.raises(BundleRejected, match="format version"):
        read_bundle(_changed(lambda p: p.update(format_version=True)), {key_id(public): public}.get)


# --------------------------------------------------------------------------- the CLI


def test_key_id_one_liner_recomputes_the_key_id(files: Files) -> None:
    if shutil.which("openssl") is None or shutil.which("sha256sum") is None:
        pytest.skip("needs openssl and sha256sum")
    line = "openssl pkey -pubin -in partner.pem -outform DER | tail -c 32 | sha256sum | cut -c1-32"
    assert f"$ {line}" in DOC.read_text(encoding="utf-8")
    result = subprocess.run(
        ["sh", "-c", line],
        cwd=files.pem.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == files.key_id


@needs_openssl3
def test_verify_bundle_sh_verifies_a_bundle_exported_by_the_cli(
    db_url: str, env: None, app_engines: None, tmp_path: Path
) -> None:
    """The walk-through of "Verifying a bundle independently", with the real CLI."""
    runner = CliRunner()

    def run(*args: str) -> str:
        json_flag = ["--json"] if args[0] == "--json" else []
        result = runner.invoke(cli, ["--db", db_url, *json_flag, *args[len(json_flag) :]])
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        return result.stdout

    run("tenant", "create", "partner", "--name", "パートナー株式会社")
    run("tenant", "create", "client", "--name", "クライアント株式会社")
    run("user", "add", "partner-admin", "--tenant", "partner", "--role", "admin")
    run("user", "add", "client-admin", "--tenant", "client", "--role", "admin")
    key = json.loads(run("--json", "key", "generate", "-t", "client", "--as", "client-admin"))[
        "key"
    ]
    bundle = tmp_path / "bundle.json"
    run(
        "bundle",
        "export",
        "-t",
        "partner",
        "--as",
        "partner-admin",
        "-o",
        str(bundle),
        "--key",
        key,
    )
    pem = tmp_path / "partner.pem"
    pem.write_text(run("tenant", "public-key", "partner"))
    other = tmp_path / "client.pem"
    other.write_text(run("tenant", "public-key", "client"))
    partner_id = json.loads(run("--json", "tenant", "public-key", "partner"))["key_id"]

    ok = _script(bundle, pem)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [
        f"public key id:  {partner_id}",
        f"payload type:   {PAYLOAD_TYPE}",
        f"payload bytes:  {len(base64.b64decode(json.loads(bundle.read_bytes())['payload']))}",
        "Signature Verified Successfully",
    ]
    envelope = json.loads(bundle.read_bytes())
    payload = base64.b64decode(envelope["payload"])
    tampered = tmp_path / "tampered.json"
    tampered.write_text(
        json.dumps(
            {
                **envelope,
                "payload": base64.b64encode(payload.replace(b'"client"', b'"clienx"', 1)).decode(),
            }
        )
    )
    refused = _script(tampered, pem)
    assert refused.returncode == 1
    assert "Signature Verification Failure" in refused.stdout + refused.stderr
    wrong_key = _script(bundle, other)
    assert wrong_key.returncode == 1
    assert f"(signed by: {partner_id})" in wrong_key.stderr
    assert run("bundle", "verify", str(bundle), "--public-key", str(pem)).startswith(
        f"OK: signature by {partner_id} verifies; payload valid"
    )


@needs_openssl3
def test_documented_openssl_recipe_verifies_a_real_bundle_and_refuses_a_tampered_one(
    files: Files,
) -> None:
    """The console lines of section "(a)", run as written in bash."""
    section = DOC.read_text(encoding="utf-8").split("### (a)", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```console\n(.*?)```", section, re.S)
    assert block is not None, "docs/bundle-format.md lost its OpenSSL recipe"
    script = "\n".join(line[2:] for line in block.group(1).splitlines() if line.startswith("$ "))
    assert "openssl pkeyutl -verify -rawin" in script
    work = files.bundle.parent

    def run(bundle: Path) -> subprocess.CompletedProcess[str]:
        (work / "partner.pem").write_text(files.pem.read_text())
        return subprocess.run(
            ["bash", "-c", script.replace("B=bundle.json", f"B={bundle}")],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = run(files.bundle)
    assert ok.returncode == 0, ok.stderr
    assert "Signature Verified Successfully" in ok.stdout
    assert "DSSEv1 39 application/vnd.provisioner.bundle+json " in ok.stdout
    bad = run(files.tampered)
    assert bad.returncode != 0
    assert "Signature Verified Successfully" not in bad.stdout
