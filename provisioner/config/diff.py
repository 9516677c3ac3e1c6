"""Differences between two configuration documents, section by section.

Works on plain JSON data (``ConfigDocument.to_data()``), not on models, so a
plan over a 500 KB document costs dictionary comparisons, not object walks.
Items are matched by their stable key (``code``, ``index``, label key), never by
position, so reordering a list is not reported as a change of every item.

    >>> from provisioner.config.defaults import default_document
    >>> old = default_document().to_data()
    >>> new = {**old, "mode": "individual"}
    >>> [c.describe() for c in diff(old, new)]
    ['mode: changed corporate -> individual']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple

from provisioner.config.document import SECTION_NAMES

Op = Literal["added", "changed", "removed"]

#: Keyed collections: section path -> the member that identifies an item.
COLLECTIONS: dict[str, str] = {
    "memo_fields": "index",
    "checkboxes": "index",
    "picklists": "code",
    "classifications.customer": "code",
    "classifications.product": "code",
    "custom_databases": "code",
    "workflows": "code",
    "blueprints": "code",
    "roles": "code",
}
#: Keyed lists nested inside a collection's items: member -> identifying key.
NESTED: dict[str, str] = {
    "values": "code",
    "fields": "key",
    "options": "code",
    "states": "code",
    "transitions": "code",
    "link_buttons": "code",
    "external_systems": "code",
}

#: Plan sections in display order (classifications splits in two).
PLAN_SECTIONS: tuple[str, ...] = tuple(
    part
    for name in SECTION_NAMES
    for part in (
        ("classifications.customer", "classifications.product")
        if name == "classifications"
        else (name,)
    )
)


class Change(NamedTuple):
    """One change; a tuple, so that a plan of thousands of items is cheap to build."""

    section: str
    key: str
    op: Op
    before: Any = None
    after: Any = None
    details: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f"{self.section}: " if self.key == "" else f"{self.section}[{self.key}]: "
        if self.op == "changed" and self.key != "" and self.details:
            return where + "changed " + "; ".join(self.details)
        if self.op == "changed":
            return where + f"changed {_short(self.before)} -> {_short(self.after)}"
        if self.op == "added":
            return where + f"added {_short(_label(self.after))}"
        return where + f"removed {_short(_label(self.before))}"

    def to_dict(self) -> dict[str, Any]:
        """The change for a stored plan: whole items are summarised to their label."""
        return {
            "section": self.section,
            "key": self.key,
            "op": self.op,
            "before": _brief(self.before),
            "after": _brief(self.after),
            "details": list(self.details),
        }


def _brief(value: Any) -> Any:
    if value is None:  # the common case (added / removed items), checked first: plans are big
        return None
    if type(value) is dict:  # the other common case, without an ABC check
        return {"label": value["label"]} if "label" in value else {}
    if isinstance(value, Mapping):
        return {"label": value["label"]} if "label" in value else {}
    if isinstance(value, list):
        return f"{len(value)} item(s)"
    return value


def _label(item: Any) -> Any:
    if isinstance(item, Mapping) and "label" in item:
        return item["label"]
    return item


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section_value(data: Mapping[str, Any], path: str) -> Any:
    """``data['classifications']['customer']`` for ``'classifications.customer'``."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def keyed(items: Iterable[Mapping[str, Any]], key: str) -> dict[str, Mapping[str, Any]]:
    return {str(item[key]): item for item in items}


def _item_details(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    details: list[str] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in NESTED and isinstance(old, list) and isinstance(new, list):
            k = NESTED[name]
            a, b = keyed(old, k), keyed(new, k)
            added = [c for c in b if c not in a]
            removed = [c for c in a if c not in b]
            changed = [c for c in b if c in a and a[c] != b[c]]
            parts = [
                f"+{', +'.join(added)}" if added else "",
                f"-{', -'.join(removed)}" if removed else "",
                f"~{', ~'.join(changed)}" if changed else "",
            ]
            text = " ".join(p for p in parts if p) or "reordered"
            details.append(f"{name} {text}")
        else:
            details.append(f"{name}: {_short(old)} -> {_short(new)}")
    return tuple(details)


def diff_section(path: str, old: Any, new: Any) -> list[Change]:
    if old == new:
        return []
    if path in COLLECTIONS:
        key = COLLECTIONS[path]
        a, b = keyed(old or [], key), keyed(new or [], key)
        changes = [Change(path, k, "removed", v) for k, v in a.items() if k not in b]
        for k, v in b.items():
            was = a.get(k)
            if was is None:
                changes.append(Change(path, k, "added", None, v))
            elif was != v:
                changes.append(Change(path, k, "changed", was, v, _item_details(was, v)))
        return changes
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes = []
        for k in sorted(set(old) | set(new)):
            if k not in new:
                changes.append(Change(path, k, "removed", before=old[k]))
            elif k not in old:
                changes.append(Change(path, k, "added", after=new[k]))
            elif old[k] != new[k]:
                details = (
                    _item_details({k: old[k]}, {k: new[k]}) if isinstance(old[k], list) else ()
                )
                changes.append(Change(path, k, "changed", old[k], new[k], details))
        return changes
    return [Change(path, "", "changed", old, new)]


def diff(
    old: Mapping[str, Any], new: Mapping[str, Any], sections: Iterable[str] | None = None
) -> list[Change]:
    """Changes that turn ``old`` into ``new``, limited to ``sections`` (plan section names)."""
    wanted = PLAN_SECTIONS if sections is None else tuple(sections)
    changes: list[Change] = []
    for path in wanted:
        changes.extend(diff_section(path, section_value(old, path), section_value(new, path)))
    return changes


def summarize(changes: Iterable[Change]) -> dict[str, dict[str, int]]:
    """``{section: {"added": n, "changed": n, "removed": n}}`` for sections with changes."""
    summary: dict[str, dict[str, int]] = {}
    for change in changes:
        counts = summary.setdefault(change.section, {"added": 0, "changed": 0, "removed": 0})
        counts[change.op] += 1
    return summary
