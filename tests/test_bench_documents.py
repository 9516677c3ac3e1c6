"""The benchmarks keep working as the code under them changes: their generated
configurations stay valid as the schema and its checks grow (a benchmark that stops at
its first step measures nothing), and every benchmark imports (``bench`` is also type
checked with the package: ``[tool.mypy] packages`` in pyproject.toml, so a renamed
function a benchmark calls fails ``mypy``, not the next person who measures)."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHES = sorted(p.stem for p in (ROOT / "bench").glob("bench_*.py"))


def test_the_large_benchmark_configuration_validates() -> None:
    from bench import bench_core
    from provisioner.config.validate import document_from_data

    document_from_data(bench_core.large_config(), what="benchmark document")


def test_the_upgrade_benchmark_documents_validate() -> None:
    from bench import bench_upgrade

    base, ours, theirs = bench_upgrade.documents()  # validates all three
    assert base != ours != theirs


@pytest.mark.parametrize("name", BENCHES)
def test_every_benchmark_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert callable(getattr(module, "main", None)), f"bench/{name}.py has no main()"


def test_the_benchmarks_are_type_checked() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "bench" in config["tool"]["mypy"]["packages"]
    assert (ROOT / "bench" / "__init__.py").is_file()  # one module name per file for mypy
