"""The copy story through the services, on both databases."""

from __future__ import annotations

from tests.support import World, labelled


def test_send_review_approve_rollback(world: World) -> None:
    world.tenant("partner")
    world.tenant("client")
    world.set_config("partner", labelled(world.config("partner"), 1, "年賀状"))
    transfer = world.send("partner", world.key("client"))
    assert world.transfer(transfer).status == "pending"
    assert world.config("client")["checkboxes"][0]["label"] == "チェック1"
    decision = world.approve(transfer, "client-admin")
    assert decision.outcome == "applied"
    assert world.config("client")["checkboxes"][0]["label"] == "年賀状"
    assert world.version("client") == 2
