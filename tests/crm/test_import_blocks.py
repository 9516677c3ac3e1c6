"""How the CSV import goes through its blocks: its writes one block behind its reading
(``csvio._Behind``: in order, one at a time, errors raised, the last one ended before the
transaction is), each block with the cyclic collector paused (``csvio._paused``)."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from provisioner.services.crm.csvio import _Behind, _paused


class Boom(Exception):
    pass


@pytest.mark.parametrize("threaded", [False, True])
def test_writes_run_in_order_one_at_a_time_and_all_end_by_the_exit(threaded: bool) -> None:
    done: list[int] = []
    running = threading.Lock()
    threads: set[int] = set()

    def write(block: int) -> None:
        assert running.acquire(blocking=False), "two writes at once"
        try:
            time.sleep(0.01)
            done.append(block)
            threads.add(threading.get_ident())
        finally:
            running.release()

    with _Behind(threaded) as behind:
        for block in range(5):
            behind.run(write, block)
            assert done == list(range(block + (not threaded)))  # the last may still run
    assert done == list(range(5))
    assert (threading.get_ident() in threads) is not threaded


@pytest.mark.parametrize("threaded", [False, True])
def test_a_failed_write_is_raised_and_no_later_write_runs(threaded: bool) -> None:
    done: list[int] = []

    def write(block: int) -> None:
        if block == 1:
            raise Boom(block)
        done.append(block)

    def import_blocks() -> None:
        with _Behind(threaded) as behind:
            for block in range(4):
                behind.run(write, block)

    with pytest.raises(Boom):
        import_blocks()
    assert done == [0]


def test_a_failed_last_write_is_raised_at_the_exit() -> None:
    def write(block: int) -> None:
        raise Boom(block)

    with pytest.raises(Boom), _Behind(True) as behind:
        behind.run(write, 0)


def test_an_error_of_the_reading_waits_for_the_write_in_flight_and_wins() -> None:
    ended: list[str] = []

    def write(_block: int) -> None:
        time.sleep(0.05)
        ended.append("write")
        raise Boom("the write's")

    def import_blocks() -> None:
        with _Behind(True) as behind:
            behind.run(write, 0)
            raise ValueError("the reading's")

    with pytest.raises(ValueError, match="the reading's"):
        import_blocks()
    assert ended == ["write"]  # ended before the error left the block


def test_the_collector_is_paused_for_each_block_and_back_between_and_after() -> None:
    assert gc.isenabled()
    seen = []
    blocks = _paused(iter([[(2, ["a"])], [(3, ["b"])]]))
    for block in blocks:
        seen.append((block[0][0], gc.isenabled()))
    assert seen == [(2, False), (3, False)]
    assert gc.isenabled()

    def fail_on_the_first_block() -> None:
        for _block in _paused(iter([[(2, ["a"])], [(3, ["b"])]])):
            raise ValueError("bad block")

    with pytest.raises(ValueError, match="bad block"):
        fail_on_the_first_block()
    assert gc.isenabled()
