"""PostgreSQL pool: dead pooled connections are replaced at checkout, with no ping per use."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, event, text

from provisioner.db import engine as engine_module
from provisioner.db.engine import make_engine

pytestmark = pytest.mark.postgres


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT pg_backend_pid()")) or 0)


def _terminate(url: str, pid: int) -> None:
    admin = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with admin.begin() as conn:
            assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(200):  # until the backend has gone (it has then told its client)
                if not conn.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                ):
                    break
                time.sleep(0.01)
    finally:
        admin.dispose()


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, stmt, *_a: seen.append(stmt))
    return seen


def test_terminated_backend_is_replaced_transparently(postgres_url: str) -> None:
    engine = make_engine(postgres_url, pool_size=1, max_overflow=0)
    try:
        killed = _backend_pid(engine)  # the one pooled connection
        _terminate(postgres_url, killed)
        with engine.begin() as conn:  # the next transaction succeeds, on a new connection
            assert conn.scalar(text("SELECT 1")) == 1
            assert conn.scalar(text("SELECT pg_backend_pid()")) != killed
        assert _backend_pid(engine) != killed
    finally:
        engine.dispose()


def test_no_round_trip_at_checkout_of_a_recent_connection(postgres_url: str) -> None:
    engine = make_engine(postgres_url, pool_size=1, max_overflow=0)
    try:
        pid = _backend_pid(engine)
        with engine.connect() as conn:
            seen = _statements(engine)
            conn.execute(text("SELECT 2"))
        assert seen == ["SELECT 2"]  # no ping went first
        assert _backend_pid(engine) == pid  # and the connection was reused
    finally:
        engine.dispose()


def test_connection_idle_for_long_is_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(postgres_url, pool_size=1, max_overflow=0)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counting_ping(dbapi_conn: object) -> bool:
        pings.append(dbapi_conn)
        return real_ping(dbapi_conn)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
    try:
        pid = _backend_pid(engine)
        assert pings == []  # used just now (or new): not pinged
        monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", 0.0)
        time.sleep(0.01)
        assert _backend_pid(engine) == pid  # pinged, alive, reused
        assert len(pings) == 1

        def failing_ping(_dbapi_conn: object) -> bool:
            raise OSError("network unreachable")

        monkeypatch.setattr(engine.dialect, "do_ping", failing_ping)
        time.sleep(0.01)
        # the failed ping discards the connection; the retry connects afresh (a new
        # connection is not pinged)
        assert _backend_pid(engine) != pid
    finally:
        engine.dispose()


def test_an_idle_socket_numbered_above_1024_is_not_taken_for_a_closed_one() -> None:
    """A busy server holds more than 1,024 descriptors; select() would refuse those."""
    import os
    import socket

    ours, theirs = socket.socketpair()
    high = os.dup2(ours.fileno(), 1500)
    try:

        class Conn:
            def fileno(self) -> int:
                return high

        assert not engine_module._closed_by_server(Conn())  # idle: alive
        theirs.close()  # the other end goes away: readable (end of file)
        assert engine_module._closed_by_server(Conn())
    finally:
        os.close(high)
        ours.close()
        theirs.close()
