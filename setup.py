"""Build of the native part (metadata and everything else: pyproject.toml).

The C module (``provisioner/services/crm/_postings.c``) only makes bulk index
writes faster; ``search_index`` falls back to its Python reference when the
module is absent. So the build is optional: without a working C compiler the
install still succeeds and one line says the Python reference is used. Set
``PROVISIONER_REQUIRE_NATIVE=1`` to make a failed build an error instead (CI).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

NOTICE = (
    "provisioner: the native module {name} was not built ({reason}); "
    "the Python reference implementation is used (same results, slower bulk imports)"
)
BUILD_ERRORS = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed compilation in one line instead of failing."""

    def run(self) -> None:
        try:
            super().run()
        except BUILD_ERRORS as exc:  # no compiler at all: found before any extension
            self._skipped("the extensions", exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            self._skipped(ext.name, exc)

    def _skipped(self, name: str, exc: BaseException) -> None:
        if os.environ.get("PROVISIONER_REQUIRE_NATIVE") == "1":
            raise exc
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(NOTICE.format(name=name, reason=reason), file=sys.stderr)


setup(
    ext_modules=[
        Extension(
            "provisioner.services.crm._postings",
            ["provisioner/services/crm/_postings.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        ),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
