"""The CLI contract scripts depend on: names, ``--json`` shapes, exit codes, errors.

Exit 0 on success, 1 when an operation is refused or fails (a one-line reason
on stderr, never a traceback), 2 on usage errors. Every ``--json`` output
parses. Runs on SQLite and PostgreSQL (``db_url``). The last tests check that
an exported bundle verifies independently: with ``bundle verify --public-key``
and with ``openssl pkeyutl -verify -rawin``.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from provisioner.bundles.envelope import pae
from provisioner.cli.main import cli


class Cli:
    """Runs ``provisioner --db URL ...`` and checks the exit-code and stderr contract."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.db_url = db_url
        self.tmp = tmp_path
        self.runner = CliRunner()

    def run(self, *args: str, code: int = 0, as_json: bool = False) -> Result:
        argv = ["--db", self.db_url, *(["--json"] if as_json else []), *args]
        result = self.runner.invoke(cli, argv, catch_exceptions=True)
        shown = f"{argv}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        assert result.exit_code == code, shown
        assert "Traceback" not in result.stdout + result.stderr, shown
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"uncaught {result.exception!r}\n{shown}")
        if code == 1 and not as_json:
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, shown
            assert lines[0].startswith("error: "), shown
            assert "internal error" not in lines[0], shown
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, as_json=True).stdout)

    def file(self, name: str, content: bytes | str) -> str:
        path = self.tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)


@pytest.fixture
def run(db_url: str, env: None, tmp_path: Path, app_engines: None) -> Cli:
    c = Cli(db_url, tmp_path)
    assert set(c.json("init")) >= {"database", "revision"}
    for slug in ("partner", "client"):
        created = c.json("tenant", "create", slug, "--name", f"{slug} 株式会社")
        assert created["slug"] == slug
        assert created["config_version"] == 1
        added = c.json("user", "add", f"{slug}-admin", "--tenant", slug, "--role", "admin")
        assert added == {"login": f"{slug}-admin", "tenant": slug, "role": "admin"}
    c.json("user", "add", "sato", "--tenant", "client", "--role", "general")
    return c


def _checkboxes(run: Cli, label: str) -> str:
    doc = run.json("config", "show", "-t", "partner")
    boxes = doc["checkboxes"]
    boxes[0]["label"] = label
    return run.file("checkboxes.json", json.dumps({"checkboxes": boxes}, ensure_ascii=False))


def test_contract_names_and_json_outputs(run: Cli) -> None:
    """Every contract command exists under its name and its --json output parses."""
    slugs = [t["slug"] for t in run.json("tenant", "list")]
    assert slugs == ["partner", "client"]
    pem = run.run("tenant", "public-key", "partner").stdout
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")

    doc = run.json("config", "show", "-t", "partner", "--as", "partner-admin")
    assert len(doc["checkboxes"]) == 48
    assert len(doc["memo_fields"]) == 10
    changed = run.json(
        "config", "set", "-t", "partner", "--as", "partner-admin", _checkboxes(run, "年賀状")
    )
    assert changed == {"version": 2, "changed": True}
    assert [h["version"] for h in run.json("config", "history", "-t", "partner")] == [1, 2]
    diff = run.json("config", "diff", "-t", "partner", "1", "2")
    assert diff["summary"] == {"checkboxes": {"added": 0, "changed": 1, "removed": 0}}

    key = run.json("key", "generate", "-t", "client", "--as", "client-admin")
    assert key["key"].startswith("pcpy_")
    assert key["expires_at"].endswith("Z")
    assert [
        k["state"] for k in run.json("key", "list", "-t", "client", "--as", "client-admin")
    ] == ["active"]
    sent = run.json("send", "-t", "partner", "--as", "partner-admin", "--key", key["key"])
    transfer = sent["transfer"]
    inbox = run.json("inbox", "list", "-t", "client", "--as", "client-admin")
    assert [(t["id"], t["status"]) for t in inbox] == [(transfer, "pending")]
    shown = run.json("inbox", "show", str(transfer), "--as", "client-admin")
    assert shown["plan"]["summary"]["checkboxes"]["changed"] == 1
    approved = run.json("inbox", "approve", str(transfer), "--as", "client-admin")
    assert (approved["outcome"], approved["version"]) == ("applied", 2)
    rolled = run.json("config", "rollback", "-t", "client", "--to", "1", "--as", "client-admin")
    assert rolled == {"version": 3, "restored": 1}

    spare = run.json("key", "generate", "-t", "client", "--as", "client-admin")
    revoked = run.json("key", "revoke", "-t", "client", str(spare["id"]), "--as", "client-admin")
    assert revoked["state"] == "revoked"

    key2 = run.json("key", "generate", "-t", "client", "--as", "client-admin")
    out = str(run.tmp / "bundle.json")
    exported = run.json(
        "bundle",
        "export",
        "-t",
        "partner",
        "--as",
        "partner-admin",
        "-o",
        out,
        "--key",
        key2["key"],
    )
    assert exported["file"] == out
    assert exported["audience"]["tenant"] == "client"
    assert run.json("bundle", "verify", out)["valid"] is True
    inspected = run.json("bundle", "inspect", out)
    assert inspected["verified"] is False
    assert inspected["bundle_id"] == exported["bundle_id"]
    received = run.json("receive", "-t", "client", "--as", "client-admin", out)
    rejected = run.json(
        "inbox", "reject", str(received["transfer"]), "--as", "client-admin", "--reason", "不要"
    )
    assert rejected["status"] == "rejected"


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["key", "generate", "-t", "client"],  # --as missing
        ["inbox", "approve", "1", "--as", "client-admin", "--mode", "overwrite"],
        ["config", "diff", "-t", "client", "one", "two"],
        ["tenant", "create", "x", "--name", "X", "--plan", "platinum"],
        ["bundle", "verify", "bundle.json", "--public-key", "/no/such.pem"],
    ],
)
def test_usage_errors_exit_2(run: Cli, args: list[str]) -> None:
    """Contract: usage errors exit 2 (scripts tell them apart from refusals)."""
    run.run(*args, code=2)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["key", "generate", "-t", "client", "--as", "sato"], "only an admin"),
        (["key", "generate", "-t", "client", "--as", "partner-admin"], "no access"),
        (["send", "-t", "partner", "--as", "partner-admin", "--key", "pcpy_nonsense"], "length"),
        (["config", "rollback", "-t", "client", "--to", "5", "--as", "client-admin"], "not older"),
        (["inbox", "show", "999", "--as", "client-admin"], "no transfer"),
        (["tenant", "public-key", "nobody"], "no tenant"),
    ],
)
def test_refusals_exit_1_with_one_line_reason(run: Cli, args: list[str], reason: str) -> None:
    """Contract: a refused operation exits 1 with a one-line reason on stderr."""
    assert reason in run.run(*args, code=1).stderr


def test_refusal_with_json_prints_error_object(run: Cli) -> None:
    """Contract: with --json, a refusal prints a parseable error object on stderr."""
    result = run.run("key", "generate", "-t", "client", "--as", "sato", code=1, as_json=True)
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "permission_denied"
    assert "admin" in error["message"]


@pytest.mark.parametrize(
    "content",
    [
        None,
        b"",
        b"not json at all",
        b"\xff\xfe\x00\x01",
        b"[1, 2, 3]",
        b'{"payload": 1}',
        b'{"payload":"e30=","payloadType":"application/vnd.'
        b'provisioner.bundle+json","signatures":[{"keyid":"x",'
        b'"sig":"AAAA"}]}',
    ],
    ids=["missing", "empty", "text", "binary", "array", "half-envelope", "unknown-signer"],
)
@pytest.mark.parametrize("command", ["verify", "inspect", "receive"])
def test_bad_bundle_files_refused_without_traceback(
    run: Cli, content: bytes | None, command: str
) -> None:
    """Threat/robustness: a missing, empty, non-JSON or garbage bundle file gives exit 1
    and a one-line reason, never a traceback."""
    path = str(run.tmp / "missing.json") if content is None else run.file("bad.json", content)
    if command == "receive":
        args = ["receive", "-t", "client", "--as", "client-admin", path]
    else:
        args = ["bundle", command, path]
    if command == "inspect" and content is not None and content.startswith(b'{"payload":"e30='):
        run.run(*args)  # inspect does not verify: a well-formed envelope is shown
        return
    run.run(*args, code=1)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("missing.json", None),
        ("empty.json", b""),
        ("broken.json", b'{"checkboxes": ['),
        ("list.json", b"[]"),
        ("cp932.json", '{"mode": "個人"}'.encode("cp932")),
        ("bad.yaml", b"checkboxes: [\n"),
        ("invalid.json", b'{"checkboxes": [{"index": 99}]}'),
        ("unknown.json", b'{"colour": "red"}'),
    ],
)
def test_bad_config_files_refused_without_traceback(
    run: Cli, name: str, content: bytes | None
) -> None:
    """Robustness: a missing, non-JSON, mis-encoded or invalid configuration file gives
    exit 1 and a reason (invalid documents may list their problems), never a traceback."""
    path = str(run.tmp / name) if content is None else run.file(name, content)
    result = run.runner.invoke(
        cli, ["--db", run.db_url, "config", "set", "-t", "client", "--as", "client-admin", path]
    )
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    assert run.json("config", "history", "-t", "client")[-1]["version"] == 1


def test_not_a_pem_public_key_refused(run: Cli) -> None:
    """Robustness: --public-key pointing at something that is not a PEM key gives exit 1."""
    key = run.json("key", "generate", "-t", "client", "--as", "client-admin")
    out = str(run.tmp / "b.json")
    run.run(
        "bundle", "export", "-t", "partner", "--as", "partner-admin", "-o", out, "--key", key["key"]
    )
    assert (
        "not a PEM"
        in run.run(
            "bundle", "verify", out, "--public-key", run.file("x.pem", "hello"), code=1
        ).stderr
    )


def test_approve_after_target_changed_exits_1_and_says_so(run: Cli) -> None:
    """Contract: approve re-checks the target's version; if it moved, says so (exit 1)."""
    key = run.json("key", "generate", "-t", "client", "--as", "client-admin")
    transfer = run.json("send", "-t", "partner", "--as", "partner-admin", "--key", key["key"])[
        "transfer"
    ]
    run.run("config", "set", "-t", "client", "--as", "client-admin", _checkboxes(run, "VIP"))
    result = run.run("inbox", "approve", str(transfer), "--as", "client-admin", code=1)
    assert "changed since the plan" in result.stderr
    assert (
        run.json("inbox", "approve", str(transfer), "--as", "client-admin")["outcome"] == "applied"
    )


def _export(run: Cli) -> tuple[str, str]:
    """(bundle file, partner's PEM file) via the CLI."""
    key = run.json("key", "generate", "-t", "client", "--as", "client-admin")
    out = str(run.tmp / "export.json")
    run.run(
        "bundle", "export", "-t", "partner", "--as", "partner-admin", "-o", out, "--key", key["key"]
    )
    pem = run.file("partner.pem", run.run("tenant", "public-key", "partner").stdout)
    return out, pem


def test_bundle_verify_with_public_key_from_tenant_public_key(run: Cli) -> None:
    """Independent verification: the PEM from `tenant public-key` verifies the bundle;
    another tenant's PEM does not."""
    out, pem = _export(run)
    verified = run.json("bundle", "verify", out, "--public-key", pem)
    assert verified["valid"] is True
    assert verified["source"]["tenant"] == "partner"
    other = run.file("client.pem", run.run("tenant", "public-key", "client").stdout)
    assert (
        "unknown or untrusted"
        in run.run("bundle", "verify", out, "--public-key", other, code=1).stderr
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_exported_bundle_verifies_with_openssl(run: Cli) -> None:
    """Independent verification: openssl pkeyutl -verify -rawin over DSSE's PAE."""
    out, pem = _export(run)
    envelope = json.loads(Path(out).read_bytes())
    payload = base64.b64decode(envelope["payload"])
    signed = Path(run.file("pae.bin", pae(envelope["payloadType"], payload)))
    sig = Path(run.file("sig.bin", base64.b64decode(envelope["signatures"][0]["sig"])))

    def openssl(message: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "openssl",
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                pem,
                "-rawin",
                "-in",
                str(message),
                "-sigfile",
                str(sig),
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    ok = openssl(signed)
    assert ok.returncode == 0, ok
    assert "Signature Verified Successfully" in ok.stdout, ok
    tampered = Path(
        run.file(
            "tampered.bin", pae(envelope["payloadType"], payload.replace(b"partner", b"partnex", 1))
        )
    )
    assert openssl(tampered).returncode != 0


def test_uninitialised_database_refused_with_hint(
    env: None, tmp_path: Path, app_engines: None
) -> None:
    """Contract: commands on a database that was never initialised exit 1 and say to run
    'provisioner init' (no traceback)."""
    result = CliRunner().invoke(
        cli, ["--db", f"sqlite:///{tmp_path / 'fresh.db'}", "tenant", "list"]
    )
    assert result.exit_code == 1
    assert "provisioner init" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["inbox", "show", "99999999999999999999", "--as", "client-admin"],
        ["config", "show", "-t", "client", "--version", "99999999999999999999"],
    ],
    ids=["inbox-show", "config-show"],
)
def test_out_of_range_ids_are_usage_errors(run: Cli, args: list[str]) -> None:
    """Robustness: an id beyond the database's integer range is a usage error (exit 2, the
    valid range named), not an internal or database error."""
    result = run.run(*args, code=2)
    assert "not in the range" in result.stderr
    assert "database error" not in result.stderr
    assert "Traceback" not in result.stderr


def test_out_of_range_key_id_is_not_found(run: Cli) -> None:
    """Robustness: key revoke takes an id or a selector; a huge number is simply not found."""
    result = run.run(
        "key", "revoke", "-t", "client", "99999999999999999999", "--as", "client-admin", code=1
    )
    assert "no " in result.stderr
    assert "database error" not in result.stderr
