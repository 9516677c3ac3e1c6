"""The benchmarks' generated configurations stay valid as the schema and its checks grow
(a benchmark that stops at its first step measures nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))


def test_the_large_benchmark_configuration_validates() -> None:
    import bench_core  # type: ignore[import-not-found]

    from provisioner.config.validate import document_from_data

    document_from_data(bench_core.large_config(), what="benchmark document")


def test_the_upgrade_benchmark_documents_validate() -> None:
    import bench_upgrade  # type: ignore[import-not-found]

    base, ours, theirs = bench_upgrade.documents()  # validates all three
    assert base != ours != theirs
