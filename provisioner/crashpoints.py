"""Named crash points: where the crash tests stop an operation half-way.

A crash point is one call, ``crashpoint("approve.after_version")``, placed
between two writes of one transaction (or, for an operation made of several
transactions, between two of them: ``rollout.between_batches``). By default
nothing is armed and the call returns at once (a function call and an
empty-dict test: no cost on the hot paths). The crash tests
(tests/security/test_crash_points.py) arm one point:

* ``raise``: the point raises :class:`CrashPointHit`, a ``BaseException`` like an
  interrupt, so no ``except Exception`` of the services catches it (a rollout's
  one-by-one fallback does not hide it): the transaction in flight rolls back as
  it would on a crash;
* ``kill``: the process sends itself SIGKILL (no Python clean-up at all, the
  connection is cut mid-transaction); used in a child process.

A child process is armed by the environment: ``PROVISIONER_CRASHPOINT=NAME:MODE``
(read once, at import). Every name is listed in :data:`POINTS`, and a test checks
that each appears exactly once in the code.
"""

from __future__ import annotations

import os
import signal
from typing import Literal

Mode = Literal["raise", "kill"]
MODES: tuple[Mode, ...] = ("raise", "kill")
ENV = "PROVISIONER_CRASHPOINT"

#: every crash point, by operation (the order of the operation's writes)
POINTS: tuple[str, ...] = (
    # transfers.approve
    "approve.after_lock",
    "approve.after_version",
    "approve.after_remap",
    "approve.after_claim",
    "approve.after_lineage",
    "approve.after_audit",
    # configs.rollback (inbox rollback, config rollback)
    "rollback.after_version",
    "rollback.after_transfers",
    # transfers.accept (receive, send)
    "receive.after_key_check",
    "receive.after_insert",
    "receive.after_audit",
    # rollout batches and the one-by-one path
    "rollout.batch.after_transfers",
    "rollout.batch.after_versions",
    "rollout.batch.after_audit",
    "rollout.batch.after_status",
    "rollout.one.after_deliver",
    "rollout.between_batches",
    # CSV import
    "csv.after_companies",
    "csv.after_batch",
    "csv.after_index",
    # remap of removed picklist values
    "remap.after_rewrite",
    "remap.after_tally",
    # workflow execution
    "workflow.after_record",
    "workflow.after_effects",
    "workflow.due.after_claim",
)


class CrashPointHit(BaseException):
    """The crash a test injected at a named point."""

    def __init__(self, name: str) -> None:
        super().__init__(f"crash injected at {name}")
        self.name = name


_armed: dict[str, Mode] = {}


def crashpoint(name: str) -> None:
    """Crash here when a test armed ``name``; otherwise do nothing."""
    if _armed:
        _hit(name)


def _hit(name: str) -> None:
    mode = _armed.get(name)
    if mode is None:
        return
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    _armed.clear()  # once: a retry in the same process goes through
    raise CrashPointHit(name)


def arm(name: str, mode: Mode = "raise") -> None:
    """Arm one point (tests only); an unknown name or mode is an error."""
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    if mode not in MODES:
        raise ValueError(f"unknown crash mode {mode!r} (raise or kill)")
    _armed.clear()
    _armed[name] = mode


def disarm() -> None:
    _armed.clear()


def _from_environment() -> None:
    spec = os.environ.get(ENV)
    if spec:
        name, _, mode = spec.partition(":")
        arm(name, mode or "raise")  # type: ignore[arg-type]


_from_environment()
