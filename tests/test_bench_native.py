"""The benchmarks measure the product as shipped: each says whether the native extension is
in use, and refuses to report the Python fallback's figures unless asked (issue 16)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))


def _parse(monkeypatch: pytest.MonkeyPatch, *argv: str) -> argparse.Namespace:
    import bench_core  # type: ignore[import-not-found]

    monkeypatch.setattr(sys, "argv", ["bench", *argv])
    parsed: argparse.Namespace = bench_core.parse_args(argparse.ArgumentParser())
    return parsed


def test_the_fallback_is_refused_unless_allowed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioner.services.crm import search_index

    monkeypatch.setattr(search_index, "NATIVE", False)
    with pytest.raises(SystemExit) as exc:
        _parse(monkeypatch)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "implementation: Python fallback" in err
    assert "--allow-fallback" in err
    assert _parse(monkeypatch, "--allow-fallback").allow_fallback


def test_every_written_section_names_the_implementation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import bench_core

    from provisioner.services.crm import search_index

    monkeypatch.setattr(bench_core, "DOC_PATH", tmp_path / "performance.md")
    bench_core.write_section("## A bench\n\n| a | b |", "## A bench")
    assert "Implementation measured: native extension" in bench_core.DOC_PATH.read_text()
    monkeypatch.setattr(search_index, "NATIVE", False)
    bench_core.write_section("## A bench\n\n| a | b |", "## A bench")
    text = bench_core.DOC_PATH.read_text()
    assert text.count("## A bench") == 1
    assert "Implementation measured: Python fallback" in text
    assert "NOT the product's" in text


def test_every_bench_parses_its_arguments_through_the_check() -> None:
    for script in sorted(BENCH.glob("bench_*.py")):
        source = script.read_text(encoding="utf-8")
        assert "parser.parse_args()" not in source or script.name == "bench_core.py", script
        assert "sys.path.insert(0" not in source, script
