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
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.bundles.payload import Source, build_bundle
from provisioner.bundles.signing import key_id, public_pem
from provisioner.canonical import digest
from provisioner.clock import parse_instant
from provisioner.config.defaults import default_document

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bundle-format.md"
SCRIPT = ROOT / "docs" / "verify-bundle.sh"


def _openssl_has_rawin() -> bool:
    if shutil.which("openssl") is None:
        return False
    help_text = subprocess.run(["openssl", "pkeyutl", "-help"], capture_output=True, text=True)
    return "-rawin" in help_text.stdout + help_text.stderr


needs_openssl3 = pytest.mark.skipif(not _openssl_has_rawin(),
                                    reason="needs OpenSSL 3 (pkeyutl -rawin)")


class Files:
    def __init__(self, tmp_path: Path) -> None:
        signer = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
        self.key_id = key_id(signer.public_key())
        data = default_document().to_data()
        raw = build_bundle(
            config=data,
            source=Source(tenant="partner", name="パートナー株式会社", config_version=1,
                          config_digest=digest(data)),
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
        self.tampered.write_text(json.dumps({**envelope,
                                             "payload": base64.b64encode(changed).decode()}))
        self.other_type = tmp_path / "othertype.json"
        self.other_type.write_text(json.dumps({**envelope,
                                               "payloadType": "application/vnd.in-toto+json"}))


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def _script(bundle: Path, pem: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SCRIPT), str(bundle), str(pem)], capture_output=True,
                          text=True, timeout=60)


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
    return subprocess.run([sys.executable, str(recipe), str(bundle), str(pem)],
                          capture_output=True, text=True, timeout=60)


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
