"""Fixtures for the documentation tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from provisioner.services.context import Provisioner


@pytest.fixture
def app_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dispose the engine each CLI invocation opens (no leaked connections between runs)."""
    opened: list[Provisioner] = []
    original = Provisioner.open.__func__  # type: ignore[attr-defined]

    def open_and_track(cls: type[Provisioner], *a: Any, **k: Any) -> Provisioner:
        app: Provisioner = original(cls, *a, **k)
        opened.append(app)
        return app

    monkeypatch.setattr(Provisioner, "open", classmethod(open_and_track))
    yield
    for app in opened:
        app.engine.dispose()
