"""How the CSV import goes through its blocks: the cyclic collector paused for each block
and back on between blocks and after (``csvio._paused``), so a block's garbage is freed
after it and memory stays bounded."""

from __future__ import annotations

import gc

import pytest

from provisioner.services.crm.csvio import _paused


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
