"""The sort orders of a record list (customers, companies): a leaf, so that every search
module orders the same way without importing another."""

from __future__ import annotations

from typing import Any

from provisioner.errors import ValidationFailed

#: the columns a list sorts by (``-`` in front: descending)
SORTS = ("id", "name", "kana", "created_at", "updated_at")


def order_by(sort: str, model: Any) -> list[Any]:
    """The ORDER BY of a ``sort`` (``kana``, ``-id``...) over ``model`` (contacts,
    companies: both have the :data:`SORTS` columns): the column, then the id."""
    key = sort.lstrip("-")
    if key not in SORTS:
        raise ValidationFailed(
            f"cannot sort by {sort!r}",
            hint="sort: " + ", ".join(SORTS) + " (prefix - for descending)",
        )
    column = getattr(model, key)
    if sort.startswith("-"):
        return [column.desc(), model.id.desc()]
    return [column.asc(), model.id.asc()]
