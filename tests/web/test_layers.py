"""The console and the API are siblings over the services: neither imports the other.

Their shared plumbing (application objects, rate limits, the acting user's transfer) is
in ``provisioner.web.common``; sessions and CSRF in ``provisioner.web.security``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import provisioner.web

WEB = Path(provisioner.web.__file__).parent


def _imports(module: str) -> set[str]:
    """Every module a file of ``provisioner.web`` imports, lazily or not, by full name."""
    tree = ast.parse((WEB / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import api
                base = ".".join(["provisioner", "web", *filter(None, [base])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def test_the_console_does_not_import_the_api() -> None:
    assert "provisioner.web.api" not in _imports("console")


def test_the_api_does_not_import_the_console() -> None:
    assert "provisioner.web.console" not in _imports("api")


def test_the_shared_plumbing_imports_neither() -> None:
    for module in ("common", "security", "i18n", "present"):
        imported = _imports(module)
        assert "provisioner.web.api" not in imported, module
        assert "provisioner.web.console" not in imported, module


def test_the_import_check_sees_both_spellings() -> None:
    """The check above would catch ``from provisioner.web import api`` and ``import ...api``."""
    assert "provisioner.web.api" in _imports("app")  # app.py composes the two
    assert "provisioner.web.console" in _imports("app")
