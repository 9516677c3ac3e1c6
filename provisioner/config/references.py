"""Whole-document checks that JSON Schema cannot express.

``check(doc)`` returns human-readable problems ("picklists: code 'rank' is used
twice"); an empty list means the document is consistent. Structure is already
guaranteed by :class:`~provisioner.config.document.ConfigDocument`.

    >>> from provisioner.config.defaults import default_document
    >>> check(default_document())
    []
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.config import rules
from provisioner.config.document import (
    BUILTIN_ROLES,
    CHECKBOX_COUNT,
    MEMO_COUNT,
    STANDARD_FIELDS,
    ConfigDocument,
)
from provisioner.config.memo import IdentityMemo

ACTIVITY_KIND_PICKLIST = "activity_kind"
#: the date fields a date trigger may name, per object
DATE_FIELDS: dict[str, tuple[str, ...]] = {
    "contact": ("contact.birthday",),
    "company": ("company.established",),
    "activity": ("activity.date",),
    "purchase": ("purchase.date",),
    "department": (),
}


def _duplicates(values: Iterable[object]) -> list[object]:
    items = values if isinstance(values, list) else list(values)
    if len(set(items)) == len(items):  # the common case, at C speed
        return []
    return [value for value, count in Counter(items).items() if count > 1]


#: the field paths every document has (standard fields, memo fields, checkboxes...)
_BUILTIN_FIELDS: frozenset[str] = frozenset(
    [f"{obj}.{name}" for obj, names in STANDARD_FIELDS.items() for name in names]
    + [f"{obj}.memo_{i}" for obj in ("company", "contact") for i in range(1, MEMO_COUNT + 1)]
    + [
        f"{obj}.checkbox_{i}"
        for obj in ("company", "contact")
        for i in range(1, CHECKBOX_COUNT + 1)
    ]
    + [f"{obj}.classification" for obj in ("company", "department", "contact")]
)


def known_fields(doc: Mapping[str, Any]) -> set[str]:
    """Every field path a workflow, blueprint or condition may name."""
    fields = set(_BUILTIN_FIELDS)
    fields.update([f"{bp['object']}.{bp['code']}" for bp in doc["blueprints"]])
    for db in doc["custom_databases"]:
        prefix = f"{db['attached_to']}.{db['code']}."
        fields.update([prefix + field["key"] for field in db["fields"]])
    return fields


@dataclass(frozen=True)
class _CheckboxNeeded:
    """A problem unless checkbox ``index`` is enabled (decided after the memoised parts:
    a tenant's checkboxes are often its own while its workflows are the template's)."""

    where: str
    index: Any

    def problem(self, enabled: set[Any]) -> str | None:
        return (
            None if self.index in enabled else f"{self.where}: checkbox {self.index} is not enabled"
        )


Found = list[str | _CheckboxNeeded]


def _check_memo_fields_unique(doc: Mapping[str, Any]) -> Found:
    problems: list[str] = []
    _dup(problems, "memo_fields", "index", [m["index"] for m in doc["memo_fields"]])
    return list(problems)


def _check_checkboxes(doc: Mapping[str, Any]) -> Found:
    problems: list[str] = []
    _dup(problems, "checkboxes", "index", [c["index"] for c in doc["checkboxes"]])
    return list(problems)


def _check_picklists(doc: Mapping[str, Any]) -> Found:
    problems: list[str] = []
    _check_fields(doc, {p["code"]: p for p in doc["picklists"]}, problems)
    return list(problems)


def _check_classification_trees(doc: Mapping[str, Any]) -> Found:
    problems: list[str] = []
    _check_classifications(doc, problems)
    return list(problems)


def _check_databases(doc: Mapping[str, Any]) -> Found:
    problems: list[str] = []
    _check_custom_databases(doc, problems)
    return list(problems)


def _check_roles(doc: Mapping[str, Any]) -> Found:
    problems: list[str] = []
    _dup(problems, "roles", "code", [r["code"] for r in doc["roles"]])
    for custom in doc["roles"]:
        if custom["code"] in BUILTIN_ROLES:
            problems.append(f"roles: {custom['code']!r} is a built-in role and cannot be redefined")
    return list(problems)


def _check_rules(doc: Mapping[str, Any]) -> Found:
    """Workflows and blueprints (what they name: fields, picklists, roles...)."""
    found: Found = []
    picklists = {p["code"]: p for p in doc["picklists"]}
    all_roles = {r["code"] for r in doc["roles"]} | set(BUILTIN_ROLES)
    fields = known_fields(doc)
    _check_workflows(doc, picklists, all_roles, fields, found)
    problems: list[str] = []
    _check_blueprints(doc, picklists, all_roles, fields, problems)
    return found + problems


def _check_settings(doc: Mapping[str, Any]) -> Found:
    problems: list[str] = []
    settings = doc["settings"]
    _dup(problems, "settings.link_buttons", "code", [b["code"] for b in settings["link_buttons"]])
    _dup(
        problems,
        "settings.external_systems",
        "code",
        [e["code"] for e in settings["external_systems"]],
    )
    return list(problems)


#: the checks, in the order of their problems, each with the sections it reads (all it
#: reads: a memo keys its result by the identity of these sections)
_PARTS: tuple[tuple[tuple[str, ...], Callable[[Mapping[str, Any]], Found]], ...] = (
    (("memo_fields",), _check_memo_fields_unique),
    (("checkboxes",), _check_checkboxes),
    (("picklists", "memo_fields"), _check_picklists),
    (("classifications",), _check_classification_trees),
    (("custom_databases",), _check_databases),
    (("roles",), _check_roles),
    (
        ("workflows", "blueprints", "custom_databases", "picklists", "classifications", "roles"),
        _check_rules,
    ),
    (("settings",), _check_settings),
)


def check(
    document: ConfigDocument | Mapping[str, Any], *, memo: IdentityMemo | None = None
) -> list[str]:
    """Problems with a structurally valid document's cross-references (empty: consistent).

    ``memo``: each part of the check remembered by the identity of the sections it reads
    (see :mod:`provisioner.config.memo`): checking many documents that share sections
    (a rollout's results) costs what differs. The same parts run with or without it.
    """
    doc = document.to_data() if isinstance(document, ConfigDocument) else document
    if memo is None:
        found: Found = [item for _, part in _PARTS for item in part(doc)]
    else:
        parts = [
            memo.get(
                ("references", part),
                tuple(doc[name] for name in reads),
                lambda: part(doc),  # noqa: B023
            )
            for reads, part in _PARTS
        ]
        # the usual outcome, decided without walking the parts' items: no problem found,
        # and every checkbox the memoised parts need is enabled in this document
        summaries = [memo.get(("references", _summary), (p,), lambda: _summary(p)) for p in parts]  # noqa: B023
        if not any(problem for problem, _ in summaries):
            needed = frozenset().union(*(indices for _, indices in summaries))
            if not needed or needed <= {c["index"] for c in doc["checkboxes"] if c["enabled"]}:
                return []
        found = [item for p in parts for item in p]
    enabled: set[Any] | None = None
    problems: list[str] = []
    for item in found:
        if isinstance(item, str):
            problems.append(item)
            continue
        if enabled is None:
            enabled = {c["index"] for c in doc["checkboxes"] if c["enabled"]}
        problem = item.problem(enabled)
        if problem is not None:
            problems.append(problem)
    return problems


def _summary(found: Found) -> tuple[bool, frozenset[Any]]:
    """Whether ``found`` holds a problem, and the checkboxes its other items need enabled."""
    needed = frozenset(item.index for item in found if not isinstance(item, str))
    return any(isinstance(item, str) for item in found), needed


def _dup(problems: list[Any], section: str, what: str, values: Iterable[object]) -> None:
    for value in _duplicates(values):
        problems.append(f"{section}: {what} {value!r} is used more than once")


def _check_fields(
    doc: Mapping[str, Any], picklists: Mapping[str, Any], problems: list[str]
) -> None:
    """Picklists unique (and their values), and a picklist memo names one."""
    _dup(problems, "picklists", "code", [p["code"] for p in doc["picklists"]])
    for picklist in doc["picklists"]:
        codes = [v["code"] for v in picklist["values"]]
        if len(set(codes)) != len(codes):
            _dup(problems, f"picklists.{picklist['code']}", "value code", codes)

    for memo in doc["memo_fields"]:
        index, named = memo["index"], memo["picklist"]
        if memo["type"] == "picklist":
            if named is None:
                problems.append(f"memo_fields: memo {index} is a picklist but names none")
            elif named not in picklists:
                problems.append(
                    f"memo_fields: memo {index} uses picklist {named!r}, which does not exist"
                )
        elif named is not None:
            problems.append(f"memo_fields: memo {index} is text but names a picklist")


def _check_classifications(doc: Mapping[str, Any], problems: list[str]) -> None:
    for kind in ("customer", "product"):
        nodes = doc["classifications"][kind]
        _dup(problems, f"classifications.{kind}", "code", [n["code"] for n in nodes])
        parents = {n["code"]: n["parent"] for n in nodes}
        for node in nodes:
            if node["parent"] is not None and node["parent"] not in parents:
                problems.append(
                    f"classifications.{kind}: {node['code']!r} has unknown parent "
                    f"{node['parent']!r}"
                )
        problems.extend(_cycles(f"classifications.{kind}", parents))


def _check_custom_databases(doc: Mapping[str, Any], problems: list[str]) -> None:
    _dup(problems, "custom_databases", "code", [d["code"] for d in doc["custom_databases"]])
    for db in doc["custom_databases"]:
        keys = [f["key"] for f in db["fields"]]
        if len(set(keys)) != len(keys):
            _dup(problems, f"custom_databases.{db['code']}", "field key", keys)
        for field in db["fields"]:
            options = field["options"]
            if options:
                codes = [o["code"] for o in options]
                if len(set(codes)) != len(codes):
                    _dup(problems, f"custom_databases.{db['code']}.{field['key']}", "option", codes)
            elif field["type"] == "choice":
                problems.append(
                    f"custom_databases.{db['code']}: field {field['key']!r} is a "
                    "choice without options"
                )


def _check_workflows(
    doc: Mapping[str, Any],
    picklists: Mapping[str, Any],
    all_roles: set[str],
    fields: set[str],
    problems: Found,
) -> None:
    class_codes = {n["code"] for n in doc["classifications"]["customer"]}
    kinds = picklists.get(ACTIVITY_KIND_PICKLIST)
    activity_kinds = {v["code"] for v in kinds["values"]} if kinds else set()

    _dup(problems, "workflows", "code", [w["code"] for w in doc["workflows"]])
    for wf in doc["workflows"]:
        where = f"workflows.{wf['code']}"
        trigger = wf["trigger"]
        if trigger["event"] == "field_changed" and trigger["field"] is None:
            problems.append(f"{where}: a field_changed trigger needs a field")
        if trigger["event"] == "date" and trigger["field"] not in DATE_FIELDS.get(wf["object"], ()):
            problems.append(
                f"{where}: a date trigger needs a date field of the "
                f"{wf['object']} ("
                f"{', '.join(DATE_FIELDS.get(wf['object'], ())) or 'none'})"
            )
        if trigger["event"] != "date" and (
            trigger.get("days") is not None or trigger.get("yearly") is not None
        ):
            problems.append(f"{where}: days and yearly belong to a date trigger")
        named_fields = [trigger["field"]] if trigger["field"] else []
        named_fields += [rule["field"] for rule in wf["conditions"]["rules"]]
        for action in wf["actions"]:
            kind = action["type"]
            if kind == "set_field":
                named_fields.append(action["field"])
            elif kind == "set_checkbox":  # decided on the document's checkboxes, by check()
                problems.append(_CheckboxNeeded(where, action["index"]))
            elif kind == "add_classification" and action["classification"] not in class_codes:
                problems.append(
                    f"{where}: customer classification {action['classification']!r} does not exist"
                )
            elif kind == "create_activity" and action["kind"] not in activity_kinds:
                problems.append(
                    f"{where}: activity kind {action['kind']!r} is not a value of "
                    f"the {ACTIVITY_KIND_PICKLIST!r} picklist"
                )
            elif kind == "notify" and action["role"] not in all_roles:
                problems.append(f"{where}: role {action['role']!r} does not exist")
        for path in named_fields:
            if path not in fields:
                problems.append(f"{where}: field {path!r} does not exist")

    problems.extend(rules.cycles(doc))


def _check_blueprints(
    doc: Mapping[str, Any],
    picklists: Mapping[str, Any],
    all_roles: set[str],
    fields: set[str],
    problems: list[str],
) -> None:
    _dup(problems, "blueprints", "code", [b["code"] for b in doc["blueprints"]])
    for bp in doc["blueprints"]:
        where = f"blueprints.{bp['code']}"
        source = picklists.get(bp["picklist"])
        states = {st["code"] for st in bp["states"]}
        _dup(problems, where, "state", [st["code"] for st in bp["states"]])
        _dup(problems, where, "transition", [tr["code"] for tr in bp["transitions"]])
        if source is None:
            problems.append(f"{where}: picklist {bp['picklist']!r} does not exist")
        else:
            values = {v["code"] for v in source["values"]}
            for state in sorted(states - values):
                problems.append(
                    f"{where}: state {state!r} is not a value of picklist {bp['picklist']!r}"
                )
        if bp["initial_state"] not in states:
            problems.append(f"{where}: initial state {bp['initial_state']!r} is not a state")
        for tr in bp["transitions"]:
            _check_transition(where, tr, states, all_roles, fields, problems)


def _check_transition(
    where: str,
    tr: Mapping[str, Any],
    states: set[str],
    all_roles: set[str],
    fields: set[str],
    problems: list[str],
) -> None:
    for end in (tr["from_state"], tr["to_state"]):
        if end not in states:
            problems.append(f"{where}: transition {tr['code']!r} uses unknown state {end!r}")
    for role in tr["allowed_roles"]:
        if role not in all_roles:
            problems.append(f"{where}: transition {tr['code']!r} allows unknown role {role!r}")
    for path in tr["required_fields"]:
        if path not in fields:
            problems.append(f"{where}: transition {tr['code']!r} requires unknown field {path!r}")


def _cycles(where: str, parents: Mapping[str, str | None]) -> list[str]:
    """Nodes whose parent chain loops back (each reported once)."""
    problems: list[str] = []
    done: set[str] = set()
    for start in parents:
        path: list[str] = []
        seen: set[str] = set()
        code: str | None = start
        while code is not None and code in parents and code not in done:
            if code in seen:
                loop = path[path.index(code) :]
                problems.append(f"{where}: {' -> '.join([*loop, code])} is a cycle")
                break
            seen.add(code)
            path.append(code)
            code = parents[code]
        done.update(seen)
    return problems
