#!/usr/bin/env python3
"""The project's two front-door commands; needs only Python 3.11+ and pip.

    python3 tasks.py demo      # set up .venv if needed, then run `provisioner demo`
    python3 tasks.py test      # set up .venv if needed, then run the whole test suite

Other tasks: ``lint`` (ruff format --check, ruff, mypy), ``bench`` (benchmarks under bench/).
Extra arguments after the task are passed on (to pytest for ``test``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


#: C sources of extension modules (setup.py), built next to them by the editable install
EXTENSIONS = [ROOT / "provisioner" / "services" / "crm" / "_postings.c"]


def stale_extensions() -> bool:
    """Whether a C source is newer than its built module (or was never built).

    Without a C compiler the module is not built (setup.py says so once, at
    install), and there is nothing to rebuild.
    """
    if not os.environ.get("CC") and not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        return False
    for source in EXTENSIONS:
        built = [
            p.stat().st_mtime
            for p in source.parent.glob(f"{source.stem}.*")
            if p.suffix in (".so", ".pyd")
        ]
        if not built or max(built) < source.stat().st_mtime:
            return True
    return False


def ensure_venv() -> None:
    """Create .venv and install the project (with test extras) when pyproject.toml or
    setup.py changed; rebuild the C extensions when their sources changed."""
    if sys.version_info < (3, 11):
        sys.exit(f"provisioner needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    stamp = VENV / ".provisioner-installed"
    want = hashlib.sha256(
        b"".join((ROOT / name).read_bytes() for name in ("pyproject.toml", "setup.py"))
    ).hexdigest()
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        if stale_extensions():
            print("rebuilding the C extension ...", flush=True)
            subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
        return
    if not PY.exists():
        print("creating virtual environment in .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing provisioner and its dependencies into .venv ...", flush=True)
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    stamp.write_text(want)


def run(args: list[str]) -> int:
    return subprocess.call(args, cwd=ROOT)


def main(argv: list[str]) -> int:
    task, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if task == "demo":
        ensure_venv()
        return run([str(BIN / "provisioner"), "demo", *rest])
    if task == "test":
        ensure_venv()
        workers = ["-n", "2"] if not any(a.startswith("-n") for a in rest) else []
        return run([str(PY), "-m", "pytest", *workers, *rest])
    if task == "lint":
        ensure_venv()
        return (
            run([str(BIN / "ruff"), "format", "--check", "."])
            or run([str(BIN / "ruff"), "check", "."])
            or run([str(BIN / "mypy")])
        )
    if task == "bench":
        ensure_venv()
        code = 0
        for script in sorted((ROOT / "bench").glob("bench_*.py")):
            code = code or run([str(PY), str(script), *rest])
        return code
    print(__doc__)
    return 0 if task in {"help", "-h", "--help"} else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
