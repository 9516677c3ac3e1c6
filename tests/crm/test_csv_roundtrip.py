"""Every export imports back into another tenant; errors name the file's own row numbers."""

from __future__ import annotations

import pytest

from provisioner.errors import ValidationFailed
from provisioner.services.crm import csvio, search
from provisioner.services.crm.search import Query
from tests.crm.helpers import configured, make
from tests.support import World


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "cp932"])
def test_an_export_imports_into_another_tenant(world: World, encoding: str) -> None:
    configured(world, "acme")
    configured(world, "other")
    source, target = world.actor("acme"), world.actor("other")
    make(
        world,
        source,
        "contact",
        {
            "name": "山田 花子",
            "phone": "03-1111-2222",
            "memo_2": "gold",
            "checkboxes": [1, 5],
            "classifications": ["agency"],
        },
    )
    with world.app.transaction() as ctx:
        data = csvio.export(
            ctx,
            source,
            "customers",
            Query(),
            columns=list(csvio.EXPORT_COLUMNS["customers"]),
            encoding=encoding,
        )
    with world.app.transaction() as ctx:
        report = csvio.import_customers(ctx, target, data)
    assert report.created == 1
    with world.app.transaction() as ctx:
        (found,) = search.search(ctx, target, Query()).items
    assert found["name"] == "山田 花子"
    assert found["checkboxes"] == [1, 5]


def test_blank_lines_keep_the_row_numbers_of_the_file(world: World) -> None:
    configured(world)
    raw = "name,phone\r\n\r\n山田,03-1111-2222\r\n\r\n,03-2222-3333\r\n".encode()
    with world.app.transaction() as ctx, pytest.raises(ValidationFailed) as refused:
        csvio.import_customers(ctx, world.actor("acme"), raw, dry_run=True)
    assert refused.value.problems is not None
    assert [p.split(",")[0] for p in refused.value.problems] == ["row 5"]
