"""Every application's sessions keep the derived data of record writes, however many
applications a process has made before (the hooks are not taken for installed because
an earlier, discarded application's sessionmaker lived at the same address)."""

from __future__ import annotations

import gc

from sqlalchemy import create_engine

from provisioner.security.keystore import MasterKey
from provisioner.services.context import Provisioner
from provisioner.services.crm import records, tally
from tests.conftest import MASTER_KEY


def _hooked(app: Provisioner) -> bool:
    session = app._sessions()
    try:
        return tally._before_flush in session.dispatch.before_flush and (
            tally._after_flush in session.dispatch.after_flush
        )
    finally:
        session.close()


def test_each_new_application_gets_the_flush_hooks() -> None:
    engine = create_engine("sqlite://")
    missing = 0
    for _ in range(200):  # discarded apps free their addresses for the next ones
        app = Provisioner(engine, master_key=MasterKey(MASTER_KEY))
        missing += not _hooked(app)
        del app
        gc.collect(0)
    assert missing == 0
    engine.dispose()


def test_installing_twice_does_not_run_the_hooks_twice() -> None:
    engine = create_engine("sqlite://")
    app = Provisioner(engine, master_key=MasterKey(MASTER_KEY))
    records.install_maintenance(app._sessions)
    session = app._sessions()
    try:
        assert list(session.dispatch.after_flush).count(tally._after_flush) == 1
    finally:
        session.close()
    engine.dispose()
