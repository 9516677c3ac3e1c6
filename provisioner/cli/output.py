"""Rendering: one function decides between JSON (``--json``) and text for people."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
import orjson

from provisioner.db import failures
from provisioner.errors import DatabaseError, ProvisionerError
from provisioner.services.context import Context, Provisioner

EXIT_REFUSED = 1
EXIT_USAGE = 2


@dataclass
class State:
    db_url: str | None
    as_json: bool
    _app: Provisioner | None = None
    #: run even as a PostgreSQL role that skips row-level security (--allow-superuser)
    allow_superuser: bool = False

    def app(self) -> Provisioner:
        if self._app is None:
            app = Provisioner.open(self.db_url)
            try:
                app.refuse_exempt_role(allowed=self.allow_superuser)
            except BaseException:
                app.engine.dispose()
                raise
            self._app = app
        return self._app

    @contextmanager
    def transaction(self) -> Iterator[Context]:
        with self.app().transaction() as ctx:
            yield ctx


pass_state = click.make_pass_decorator(State)


def dumps(data: Any) -> str:
    return orjson.dumps(
        data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str
    ).decode("utf-8")


def emit(state: State, data: Any, text: str | Callable[[], str] | None = None) -> None:
    """JSON of ``data`` with --json, else ``text`` (or nothing)."""
    if state.as_json:
        click.echo(dumps(data))
    elif text is not None:
        click.echo(text() if callable(text) else text)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain text table that keeps Japanese (double-width) text aligned."""
    import unicodedata

    def width(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)

    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(width(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(c + " " * (widths[i] - width(c)) for i, c in enumerate(row)).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fail(error: ProvisionerError, state: State | None) -> None:
    """Report a refused operation: one line (plus listed problems) on stderr, exit 1."""
    if state is not None and state.as_json:
        click.echo(dumps({"error": error.to_dict()}), err=True)
    else:
        click.echo(f"error: {error.diagnostics()}", err=True)
    sys.exit(EXIT_REFUSED)


def database_error(exc: Exception) -> DatabaseError:
    """A driver or pool failure as its typed cause, with the driver's own first line."""
    return failures.for_operator(exc)
