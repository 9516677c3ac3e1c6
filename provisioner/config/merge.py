"""Combining incoming sections with a tenant's document.

``replace`` gives the target exactly the source's sections; ``merge`` adds and
changes but never deletes (items the target has and the source lacks stay,
down to picklist values and custom-database fields). ``only`` limits either
mode to some sections. The result is plain data; validate it with
:func:`provisioner.config.validate.document_from_data`.

Safe activation: a workflow that arrives in a tenant lands **paused**
(``active: false``) whatever its state in the source; a workflow the tenant
already has keeps its own state (:func:`paused_arrivals`). Every way a
configuration arrives (copy, merge, three-way upgrade, rollout) goes through
here or :mod:`provisioner.config.merge3`, which applies the same rule.

    >>> combine({"mode": "corporate"}, {"mode": "individual"}, mode="merge")["mode"]
    'individual'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from provisioner.config.diff import COLLECTIONS, NESTED, keyed
from provisioner.config.document import SECTION_NAMES
from provisioner.errors import ValidationFailed

Mode = Literal["replace", "merge"]


def parse_only(only: Iterable[str] | None) -> tuple[str, ...] | None:
    """Validate a ``--only`` list of section names."""
    if only is None:
        return None
    names = tuple(dict.fromkeys(s.strip() for s in only if s.strip()))
    unknown = [n for n in names if n not in SECTION_NAMES]
    if unknown:
        raise ValidationFailed(
            f"unknown section(s): {', '.join(unknown)}",
            hint="sections are " + ", ".join(SECTION_NAMES),
        )
    if not names:
        raise ValidationFailed("--only names no section", hint="e.g. --only checkboxes,picklists")
    return names


def _merge_list(base: list[Any], incoming: list[Any], key: str) -> list[Any]:
    """Union by key; incoming items win (merged recursively); base order, then new items."""
    by_key = keyed(incoming, key)
    out = []
    for item in base:
        k = str(item[key])
        out.append(_merge_item(item, by_key.pop(k)) if k in by_key else item)
    out.extend(by_key.values())
    return out


def _merge_item(base: Mapping[str, Any], incoming: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(incoming)
    for name, key in NESTED.items():
        if isinstance(base.get(name), list) and isinstance(incoming.get(name), list):
            merged[name] = _merge_list(base[name], incoming[name], key)
    return merged


def _merge_section(name: str, base: Any, incoming: Any) -> Any:
    if name in COLLECTIONS:
        return _merge_list(base, incoming, COLLECTIONS[name])
    if name == "classifications":
        return {
            kind: _merge_list(base.get(kind, []), incoming.get(kind, []), "code")
            for kind in ("customer", "product")
        }
    if name == "labels":
        return {**base, **incoming}
    if isinstance(base, Mapping) and isinstance(incoming, Mapping):
        return _merge_item(base, incoming)
    return incoming


def paused_arrivals(incoming: list[Any], present: Iterable[Mapping[str, Any]] | None) -> list[Any]:
    """``incoming`` workflows with ``active`` as the target has them (False for new ones).

    Returns ``incoming`` itself when nothing changes (callers test identity to
    know the incoming bytes can be copied as they are).

    >>> paused_arrivals([{"code": "a", "active": True}, {"code": "b", "active": True}],
    ...                 [{"code": "b", "active": True}])
    [{'code': 'a', 'active': False}, {'code': 'b', 'active': True}]
    """
    states = {wf["code"]: wf["active"] for wf in present or ()}
    out: list[Any] | None = None
    for n, wf in enumerate(incoming):
        active = states.get(wf["code"], False)
        if wf.get("active", True) != active:
            if out is None:
                out = list(incoming[:n])
            out.append({**wf, "active": active})
        elif out is not None:
            out.append(wf)
    return incoming if out is None else out


def combine(
    base: Mapping[str, Any],
    incoming: Mapping[str, Any],
    *,
    mode: Mode = "replace",
    only: Iterable[str] | None = None,
    arriving: bool = True,
) -> dict[str, Any]:
    """The target document after taking ``incoming``'s sections (limited to ``only``).

    ``arriving``: the sections come from elsewhere (a copy, a rollout): new
    workflows land paused and existing ones keep the target's state. False for
    the tenant's own edits (``config set``), which set ``active`` as written.
    """
    wanted = set(SECTION_NAMES if only is None else only)
    result = dict(base)
    for name in SECTION_NAMES:
        if name not in wanted or incoming.get(name) is None:
            continue
        if mode == "replace" or name not in base:
            result[name] = incoming[name]
        else:
            result[name] = _merge_section(name, base[name], incoming[name])
        if name == "workflows" and arriving:
            result[name] = paused_arrivals(result[name], base.get(name))
    return result
