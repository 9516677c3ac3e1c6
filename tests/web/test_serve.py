"""``provisioner serve``: registered on the CLI, refuses an unready database like every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli.main import cli
from provisioner.web.server import app_from_environment


def test_serve_refuses_an_uninitialised_database(env: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path}/new.db", "serve"])
    assert result.exit_code == 1
    assert "the database is not initialised" in result.output
    assert "run 'provisioner init' first" in result.output


def test_the_server_app_comes_from_the_environment(env: None, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/db.db"
    assert CliRunner().invoke(cli, ["--db", url, "init"]).exit_code == 0
    monkeypatch.setenv("PROVISIONER_DATABASE_URL", url)
    app = app_from_environment()
    assert app.state.settings.secure_cookies is True
    monkeypatch.setenv("PROVISIONER_INSECURE_COOKIES", "1")
    assert app_from_environment().state.settings.secure_cookies is False
