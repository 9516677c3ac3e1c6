"""The native module is optional at install: without a C compiler the build still succeeds.

``setup.py``'s build_ext reports a failed compilation in one line and goes on
(``search_index`` then uses its Python reference, which the native tests compare
it with). Simulated with ``CC=/bin/false`` in a subprocess building into a
temporary directory (the source tree is not touched).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _build(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    lib = tmp_path / "lib"
    done = subprocess.run(
        [
            sys.executable,
            "setup.py",
            "-q",
            "build_ext",
            "--build-lib",
            str(lib),
            "--build-temp",
            str(tmp_path / "temp"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        check=False,
    )
    return done, sorted(lib.rglob("_postings*")) if lib.exists() else []


def test_without_a_compiler_the_build_succeeds_with_one_line_saying_so(tmp_path: Path) -> None:
    done, built = _build(tmp_path, CC="/bin/false", PROVISIONER_REQUIRE_NATIVE="")
    assert done.returncode == 0, done.stderr
    notices = [line for line in done.stderr.splitlines() if line.startswith("provisioner:")]
    assert len(notices) == 1
    assert "native module provisioner.services.crm._postings was not built" in notices[0]
    assert "the Python reference implementation is used" in notices[0]
    assert built == []


def test_a_build_that_must_be_native_fails_without_a_compiler(tmp_path: Path) -> None:
    done, built = _build(tmp_path, CC="/bin/false", PROVISIONER_REQUIRE_NATIVE="1")
    assert done.returncode != 0
    assert built == []


@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="no C compiler on this machine",
)
def test_with_a_compiler_the_module_is_built(tmp_path: Path) -> None:
    done, built = _build(tmp_path, PROVISIONER_REQUIRE_NATIVE="1")
    assert done.returncode == 0, done.stderr
    assert [p.suffix for p in built] == [".so"]
    assert "not built" not in done.stderr
