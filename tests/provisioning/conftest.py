"""The CLI runner of the provisioning tests: ``run`` invokes ``provisioner`` in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from provisioner.cli.main import cli


class Cli:
    def __init__(self, db_url: str, tmp: Path) -> None:
        self.db_url, self.tmp, self.runner = db_url, tmp, CliRunner()

    def run(
        self, *args: str, code: int = 0, as_json: bool = False, input: str | None = None
    ) -> Result:
        argv = ["--db", self.db_url, *(["--json"] if as_json else []), *args]
        result = self.runner.invoke(cli, argv, input=input, catch_exceptions=True)
        shown = f"{argv}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        assert result.exit_code == code, shown
        assert "Traceback" not in result.stdout + result.stderr, shown
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"uncaught {result.exception!r}\n{shown}")
        if code == 1 and not as_json:
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, shown
            assert lines[0].startswith("error: "), shown
        return result

    def json(self, *args: str, input: str | None = None) -> Any:
        return json.loads(self.run(*args, as_json=True, input=input).stdout)


@pytest.fixture
def run(db_url: str, env: None, tmp_path: Path, app_engines: None) -> Cli:
    c = Cli(db_url, tmp_path)
    c.run("init")
    return c
