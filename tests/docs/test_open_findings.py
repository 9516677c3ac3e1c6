"""docs/threat-model.md, "Fixed findings": each defect found while writing the docs stays fixed."""

from __future__ import annotations

import pytest

from provisioner.errors import PlanConflict
from provisioner.services import actors, transfers
from tests.support import World, labelled


def test_rolling_back_a_transfer_that_changed_nothing_changes_nothing(world: World) -> None:
    world.tenant("partner")
    world.tenant("client")
    same = labelled(world.config("client"), 1, "年賀状")
    world.set_config("partner", same)
    assert world.set_config("client", same) == 2  # the client's own change
    transfer_id = world.send("partner", world.key("client"))
    decision = world.approve(transfer_id, "client-admin")
    assert decision.outcome == "unchanged"
    before = world.config("client")
    with world.app.transaction() as ctx:
        transfers.rollback(ctx, actors.resolve(ctx, "client-admin", "client"), transfer_id)
    assert world.config("client") == before
    assert world.transfer(transfer_id).status == "rolled_back"
    with pytest.raises(PlanConflict, match="rolled_back"), world.app.transaction() as ctx:
        transfers.rollback(ctx, actors.resolve(ctx, "client-admin", "client"), transfer_id)
