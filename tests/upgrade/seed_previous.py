"""Run INSIDE the previous release's source tree (see build_fixtures.py): seed one database.

    python seed_previous.py URL HOME

Uses only that release's own code: its demo story (three tenants, transfers applied,
remapped, rolled back and upgraded three-way, copied workflows activated and fired),
sample customers, a deleted company, and a rollout to trusting tenants.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

from provisioner.cli import demo
from provisioner.services import actors, signing
from provisioner.services.context import Provisioner
from provisioner.services.crm import records, seed
from provisioner.services.provisioning import rollout
from provisioner.services.provisioning.rollout import Target
from tests.support import World, labelled


def main(url: str, home: Path) -> None:
    app = Provisioner.open(url, migrate_to_head=True)
    with contextlib.redirect_stdout(io.StringIO()):
        demo._story(app, home)
    world = World(app)
    with app.transaction() as ctx:
        suzuki = actors.resolve(ctx, "suzuki", "sakura-tsuhan")
        seed.seed_contacts(ctx, suzuki, 40, seed=7)
    with app.transaction() as ctx:
        takahashi = actors.resolve(ctx, "takahashi", "aoba-fudosan")
        company = records.create(ctx, takahashi, "company", {"name": "青葉開発"}).record
        for n in range(3):
            records.create(
                ctx,
                takahashi,
                "contact",
                {"name": f"青葉 太郎{n}", "kana": "アオバ タロウ", "company_id": company["id"]},
            )
        gone = records.create(ctx, takahashi, "company", {"name": "閉鎖商事"}).record
        records.create(
            ctx,
            takahashi,
            "contact",
            {"name": "閉鎖 花子", "kana": "ヘイサ ハナコ", "company_id": gone["id"]},
        )
    with app.transaction() as ctx:
        takahashi = actors.resolve(ctx, "takahashi", "aoba-fudosan")
        records.delete_record(ctx, takahashi, "company", gone["id"])
    # a rollout from a head office to two shops that trust it
    world.tenant("hq")
    world.set_config("hq", labelled(world.config("hq"), 1, "本部指定"))
    raw = world.export("hq")
    for shop in ("shop-1", "shop-2"):
        world.tenant(shop)
        with app.transaction() as ctx:
            actor = actors.resolve(ctx, f"{shop}-admin", shop)
            pem = signing.public_key_pem(ctx, actors.get_tenant(ctx, "hq").id).encode()
            signing.trust(ctx, actor, pem, label="hq HQ", policy="auto")
    with app.transaction() as ctx:
        run = rollout.start(
            ctx, actors.resolve(ctx, "hq-admin", "hq"), raw, [Target("shop-1"), Target("shop-2")]
        ).id
    rollout.process(app, "hq-admin", run)
    app.engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
