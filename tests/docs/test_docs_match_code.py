"""The documents name real things: tests, files, dependencies, errors and CLI commands.

* every ``test_file.py::test_name`` the documents cite (the threat model's "tests"
  column above all) is a test function of that file;
* every ``provisioner/...`` path they cite exists;
* every dependency in ``pyproject.toml`` is explained in docs/architecture.md;
* the error table of docs/architecture.md is the hierarchy of provisioner/errors.py;
* the README's quick start is exactly the two commands ``tasks.py`` implements;
* every ``provisioner ...`` command line shown in the README, keys/README.md and
  docs/bundle-format.md names a real command with real options.
"""

from __future__ import annotations

import ast
import functools
import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest

from provisioner import errors
from provisioner.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = {
    "README.md": ROOT / "README.md",
    "architecture": ROOT / "docs" / "architecture.md",
    "bundle-format": ROOT / "docs" / "bundle-format.md",
    "threat-model": ROOT / "docs" / "threat-model.md",
    "operations": ROOT / "docs" / "operations.md",
    "keyring": ROOT / "keys" / "README.md",
    "console": ROOT / "docs" / "console.md",
}


def _text(name: str) -> str:
    return DOCS[name].read_text(encoding="utf-8")


# --------------------------------------------------------------------------- tests cited


@functools.cache
def _test_functions() -> dict[str, list[set[str]]]:
    """Test file name -> the test functions of each file of that name."""
    found: dict[str, list[set[str]]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        }
        found.setdefault(path.name, []).append(names)
    return found


def _citations() -> list[tuple[str, str, str]]:
    return sorted(
        {
            (doc, file, test)
            for doc in DOCS
            for file, test in re.findall(r"(test_\w+\.py)::(test_\w+)", _text(doc))
        }
    )


def test_the_threat_model_cites_tests() -> None:
    cited = [c for c in _citations() if c[0] == "threat-model"]
    assert len(cited) >= 50, "the threat model's tests column went missing"


@pytest.mark.parametrize(
    ("doc", "file", "test"), _citations(), ids=[f"{d}:{t}" for d, _, t in _citations()]
)
def test_every_cited_test_exists(doc: str, file: str, test: str) -> None:
    functions = _test_functions()
    assert file in functions, f"{doc} cites {file}, which does not exist under tests/"
    assert len(functions[file]) == 1, f"{doc} cites {file}: several files have that name"
    assert test in functions[file][0], f"{doc} cites {file}::{test}, which does not exist"


def test_the_tests_the_issue_requires_are_cited_by_the_threat_model() -> None:
    """Each required attack test appears in the threat model under the name it runs as."""
    text = _text("threat-model")
    for required in (
        "test_tampered_payload_rejected",
        "test_tampered_signature_rejected",
        "test_tampered_payload_type_rejected",
        "test_bundle_replayed_to_another_tenant_rejected",
        "test_used_key_rejected",
        "test_key_accepted_one_second_before_expiry",
        "test_key_rejected_exactly_at_expiry",
        "test_another_tenants_key_rejected",
        "test_revoked_key_rejected",
        "test_untrusted_signer_rejected_when_publishers_pinned",
        "test_duplicate_json_keys_rejected",
        "test_oversize_bundle_rejected",
        "test_deep_nesting_rejected",
        "test_unknown_format_version_rejected",
        "test_sixteen_concurrent_approvals_apply_exactly_once",
        "test_sixteen_concurrent_sends_with_one_key_succeed_exactly_once",
        "test_failure_injected_mid_apply_leaves_everything_as_before",
        "test_non_admin_cannot_generate_copy_keys",
        "test_non_admin_cannot_send",
        "test_non_admin_cannot_approve",
        "test_sandbox_cannot_receive",
    ):
        assert f"::{required}`" in text or f"::{required}<br>" in text, required


# --------------------------------------------------------------------------- paths cited


def _paths() -> list[tuple[str, str]]:
    pattern = re.compile(r"`((?:provisioner|tests|docs|bench|config_schemas|keys)/[\w./-]*\w)")
    return sorted({(doc, path) for doc in DOCS for path in pattern.findall(_text(doc))})


@pytest.mark.parametrize(("doc", "path"), _paths(), ids=[f"{d}:{p}" for d, p in _paths()])
def test_every_cited_path_exists(doc: str, path: str) -> None:
    assert (ROOT / path).exists(), f"{doc} cites {path}, which does not exist"


# --------------------------------------------------------------------------- dependencies


def _requirement_names(requirements: list[str]) -> list[str]:
    return [re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0] for r in requirements]


def test_every_dependency_is_explained_in_the_architecture() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    section = _text("architecture").split("## Dependencies and why", 1)[1].split("\n## ", 1)[0]
    rows = " ".join(line for line in section.splitlines() if line.startswith("| "))
    runtime = _requirement_names(project["dependencies"])
    extras = _requirement_names(
        [r for reqs in project["optional-dependencies"].values() for r in reqs]
    )
    missing = [
        name
        for name in runtime + extras
        if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", rows, re.I)
    ]
    assert not missing, f"dependencies without a row in docs/architecture.md: {missing}"


# --------------------------------------------------------------------------- errors


def _error_classes() -> list[type[errors.ProvisionerError]]:
    seen: list[type[errors.ProvisionerError]] = []
    todo: list[type[errors.ProvisionerError]] = [errors.ProvisionerError]
    while todo:
        cls = todo.pop(0)
        if cls.__module__ == errors.__name__ and cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen


def test_the_error_table_is_the_error_hierarchy() -> None:
    section = _text("architecture").split("## Errors and exit codes", 1)[1]
    rows = {m[0]: m[1:] for m in re.findall(r"^\| `(\w+)` \| `(\w+)` \| (\d{3}) \|", section, re.M)}
    classes = {cls.__name__: (cls.code, str(cls.http_status)) for cls in _error_classes()}
    assert rows == classes


# --------------------------------------------------------------------------- README


def test_quick_start_is_exactly_the_two_task_commands() -> None:
    readme = _text("README.md")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    commands = [
        line.split("#", 1)[0].strip()
        for line in blocks[0].splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands == ["python3 tasks.py demo", "python3 tasks.py test"]
    tasks = (ROOT / "tasks.py").read_text(encoding="utf-8")
    assert 'task == "demo"' in tasks
    assert 'task == "test"' in tasks


def _command_lines() -> list[tuple[str, str]]:
    """``provisioner ...`` command lines shown in code blocks (prompts and comments removed)."""
    found: set[tuple[str, str]] = set()
    for doc in ("README.md", "keyring", "bundle-format", "operations"):
        for block in re.findall(r"```(?:sh|console)\n(.*?)```", _text(doc), re.S):
            lines = block.replace("\\\n", " ").splitlines()
            for line in lines:
                line = line.strip().removeprefix("$ ")
                if line.startswith("provisioner "):
                    found.add((doc, line.split(" #", 1)[0].split(" >", 1)[0].strip()))
    return sorted(found)


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = cli
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"no command {rest[0]!r} under {command.name!r}"
        command, rest = sub, rest[1:]
    return command, rest


@pytest.mark.parametrize(
    ("doc", "line"), _command_lines(), ids=[f"{d}:{ln[:60]}" for d, ln in _command_lines()]
)
def test_every_documented_command_line_names_real_commands_and_options(doc: str, line: str) -> None:
    words = shlex.split(re.sub(r"\[[^\]]*\]", "", line))[1:]
    globals_ = {"--json", "--db"}
    while words and words[0] in globals_:
        words = words[2:] if words[0] == "--db" else words[1:]
    command, rest = _resolve(words)
    assert not isinstance(command, click.Group), f"{line!r} names a group, not a command"
    options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    for word in rest:
        if word.startswith("-") and word != "-":
            assert word.split("=", 1)[0] in options, f"{line!r}: {word} is not an option"


def test_the_readme_links_the_documents() -> None:
    readme = _text("README.md")
    for target in (
        "docs/architecture.md",
        "docs/bundle-format.md",
        "docs/threat-model.md",
        "keys/README.md",
        "docs/console.md",
    ):
        assert f"]({target})" in readme, target
        assert (ROOT / target).exists()


# --------------------------------------------------------------------------- layers


DOMAIN = ("bundles", "config", "security", "canonical.py", "clock.py", "errors.py")
FORBIDDEN_IN_DOMAIN = (
    "sqlalchemy",
    "click",
    "fastapi",
    "provisioner.services",
    "provisioner.db",
    "provisioner.cli",
    "provisioner.web",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_domain_code_imports_no_database_interface_or_service_code() -> None:
    """docs/architecture.md, "Layers": imports point downward only."""
    package = ROOT / "provisioner"
    files = [
        p
        for entry in DOMAIN
        for p in (
            (package / entry).rglob("*.py") if (package / entry).is_dir() else [package / entry]
        )
    ]
    assert len(files) > 10
    for path in files:
        bad = sorted(
            name
            for name in _imports(path)
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_DOMAIN)
        )
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_services_import_no_interface_code() -> None:
    for path in (ROOT / "provisioner" / "services").rglob("*.py"):
        bad = sorted(
            name
            for name in _imports(path)
            if name.split(".")[0] in {"click", "fastapi"}
            or name.startswith(("provisioner.cli", "provisioner.web"))
        )
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
