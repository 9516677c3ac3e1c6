"""Workflow rules as pure functions over records: which rules a write fires, what they change.

No database here. The record-write path (``services/crm/records.py``) hands a
record to :meth:`RuleSet.run` as a dict of its stored columns (checkboxes as the
48-bit mask, classifications as the stored ``,a,b,`` text, blueprint states under
``state:CODE``) and gets back the firings: for each rule, what it changed on the
record itself (already applied to the dict, so that the next rule sees it) and the
effects on other records (a parent contact's checkbox, a new activity, a
notification), which the write path carries out through itself.

Semantics, in one place:

* ``created`` fires once after a record is created, ``updated`` after an update that
  changed something, ``field_changed`` when the named field's value actually changed,
  ``date`` from the scheduler (:func:`due_on`); conditions are evaluated against the
  record *after* the write.
* A rule's changes to its own record are themselves an update: they may fire other
  rules (``updated`` / ``field_changed``), up to :data:`MAX_DEPTH` rounds. Each rule
  fires at most once per record in one write; a rule that another rule's change would
  fire again is a cycle, cut and reported (:attr:`Firing.error`). A rule whose own
  change would fire it again is simply done.
* Cycles that can be seen in the configuration are refused before it is stored
  (:func:`cycles`): a chain of rules that creates records forever, or that sets one
  field to two different values in turn.

    >>> from provisioner.config.defaults import default_document
    >>> rules = RuleSet.of(default_document())
    >>> rules.watches("contact", "created")
    False
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from provisioner.config.document import ConfigDocument, Workflow

#: rounds of rule changes on one record, and hops across records, before a chain is cut
MAX_DEPTH = 8

#: the objects whose rules may set a checkbox or a classification on the record itself
_OWN_CHECKBOXES = frozenset({"contact"})
_OWN_CLASSIFICATIONS = frozenset({"contact", "company"})
#: objects that belong to a contact (their rules' contact actions act on that contact)
CHILD_OF_CONTACT = frozenset({"activity", "purchase"})


class ActionError(Exception):
    """An action that cannot be carried out (its message goes to the execution log)."""


# ---------------------------------------------------------------- reading fields


def split_path(path: str) -> tuple[str, str]:
    """``contact.memo_3`` -> ``("contact", "memo_3")``."""
    obj, _, name = path.partition(".")
    return obj, name


def codes(stored: Any) -> list[str]:
    if isinstance(stored, list):
        return [str(c) for c in stored]
    return [c for c in str(stored or "").split(",") if c]


def read(row: Mapping[str, Any], name: str) -> Any:
    """A field's value as conditions see it, from a row of stored columns."""
    if name.startswith("checkbox_") and name[9:].isascii() and name[9:].isdigit():
        return bool(int(row.get("checkboxes") or 0) >> (int(name[9:]) - 1) & 1)
    if name == "classification":
        return codes(row.get("classifications"))
    if "." in name:  # a custom-database field (contact.db.field): not on the record itself
        return None
    if name in row:
        return row[name]
    return row.get(f"state:{name}")


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value is False


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _text_number(value)
    return None


@lru_cache(maxsize=65536)
def _text_number(value: str) -> float | None:
    """A text read as a number (``" 12 "``, ``"-5"``, ``"1e3"``), or None."""
    if not value.strip().lstrip("-").isascii():
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, list):
        return str(wanted) in actual
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return (
            bool(actual) == bool(wanted)
            if isinstance(wanted, bool)
            else (str(wanted).lower() in (("true", "1") if actual else ("false", "0", "")))
        )
    if wanted is None:
        return _empty(actual)
    a, w = _number(actual), _number(wanted)
    if a is not None and w is not None:
        return a == w
    return str(actual if actual is not None else "") == str(wanted)


def _order(actual: Any, wanted: Any) -> int | None:
    """-1 / 0 / 1 comparing actual with wanted (numbers as numbers, else text), None if
    they cannot be compared (an empty value)."""
    if _empty(actual) or wanted is None or isinstance(actual, list):
        return None
    a, w = _number(actual), _number(wanted)
    if a is not None and w is not None:
        return (a > w) - (a < w)
    sa, sw = str(actual), str(wanted)
    return (sa > sw) - (sa < sw)


def test(op: str, actual: Any, wanted: Any) -> bool:
    """One condition: ``eq ne contains empty not_empty gt lt``."""
    if op == "eq":
        return _same(actual, wanted)
    if op == "ne":
        return not _same(actual, wanted)
    if op == "contains":
        if isinstance(actual, list):
            return str(wanted) in actual
        return not _empty(actual) and str(wanted if wanted is not None else "") in str(actual)
    if op == "empty":
        return _empty(actual)
    if op == "not_empty":
        return not _empty(actual)
    order = _order(actual, wanted)
    if order is None:
        return False
    return order > 0 if op == "gt" else order < 0


# ---------------------------------------------------------------- compiled rules

Related = Callable[[str], Mapping[str, Any] | None]


def _reader(name: str) -> Callable[[Mapping[str, Any]], Any]:
    """:func:`read` of one field, decided once (the hot path of a write with many rules)."""
    if name.startswith("checkbox_") and name[9:].isascii() and name[9:].isdigit():
        shift = int(name[9:]) - 1
        return lambda row: bool(int(row.get("checkboxes") or 0) >> shift & 1)
    if name == "classification" or "." in name:
        return lambda row: read(row, name)
    state = f"state:{name}"
    return lambda row: row[name] if name in row else row.get(state)


def _column_of(name: str) -> str:
    """The stored column a condition field is read from (``""``: none of the record's)."""
    if name.startswith("checkbox_") and name[9:].isascii() and name[9:].isdigit():
        return "checkboxes"
    if name == "classification":
        return "classifications"
    return "" if "." in name else name


@dataclass(frozen=True)
class Rule:
    """A workflow compiled for evaluation."""

    workflow: Workflow
    code: str = field(init=False)
    object: str = field(init=False)
    #: (object, reader, op, value) per condition, decided once
    _checks: tuple[tuple[str, Callable[[Mapping[str, Any]], Any], str, Any], ...] = field(
        init=False, repr=False, compare=False
    )
    #: (object, field, column read) per condition (:meth:`RuleSet.batch_runner`)
    fields: tuple[tuple[str, str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks = []
        fields = []
        for c in self.workflow.conditions.rules:
            obj, name = split_path(c.field)
            checks.append((obj, _reader(name), c.op, c.value))
            fields.append((obj, name, _column_of(name)))
        object.__setattr__(self, "_checks", tuple(checks))
        object.__setattr__(self, "fields", tuple(fields))
        object.__setattr__(self, "code", self.workflow.code)
        object.__setattr__(self, "object", self.workflow.object)

    def matches(self, row: Mapping[str, Any], related: Related | None = None) -> bool:
        """Whether the conditions hold for the record (``related``: another object's row,
        e.g. the contact of an activity, for conditions that name it)."""
        checks = self._checks
        if not checks:
            return True
        every = self.workflow.conditions.match == "all"
        own = self.workflow.object
        for obj, reader, op, wanted in checks:
            if obj == own:
                value = reader(row)
            else:
                other = related(obj) if related is not None else None
                value = None if other is None else reader(other)
            if test(op, value, wanted) != every:
                return not every
        return every


@dataclass(slots=True)
class Effect:
    """An action on another record, or a notification, for the write path to carry out."""

    kind: str  # "set" | "create_activity" | "notify"
    target: str = ""  # set: "contact" / "company" (the record's parent)
    values: dict[str, Any] = field(default_factory=dict)  # set: data as records.update takes
    kind_code: str = ""  # create_activity
    text: str = ""  # create_activity content / notify message
    due_in_days: int = 0
    role: str = ""  # notify


@dataclass(slots=True)
class Firing:
    """One rule fired on one record: its changes to the record (column -> [old, new])
    and its effects elsewhere; ``error`` when an action failed or a cycle was cut."""

    rule: str
    depth: int
    changes: dict[str, list[Any]] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


#: shapes one value for a column of the record (input rules, picklists); raises
#: ActionError when the value is not valid for the field
Coerce = Callable[[str, str, Any], Any]


def _own_action(rule: Rule, action: Any) -> tuple[str, str] | None:
    """``(column, field)`` when the action changes the rule's own record, else None."""
    kind = action.type
    if kind == "set_field":
        obj, name = split_path(action.field)
        if obj != rule.object:
            return None
        if name.startswith("checkbox_") and rule.object in _OWN_CHECKBOXES:
            return "checkboxes", name
        return name, name
    if kind == "set_checkbox" and rule.object in _OWN_CHECKBOXES:
        return "checkboxes", f"checkbox_{action.index}"
    if kind == "add_classification" and rule.object in _OWN_CLASSIFICATIONS:
        return "classifications", "classification"
    return None


class RuleSet:
    """The active workflows of one configuration, indexed by object and trigger."""

    def __init__(self, workflows: Iterable[Workflow], blueprint_fields: Iterable[str] = ()) -> None:
        self._by: dict[tuple[str, str], list[Rule]] = {}
        self.blueprint_fields = frozenset(blueprint_fields)
        for wf in workflows:
            if wf.active:
                self._by.setdefault((wf.object, wf.trigger.event), []).append(Rule(wf))
        #: objects whose rules a change can fire (updated / field_changed rules)
        self._cascades = {
            obj: True for (obj, event) in self._by if event in ("updated", "field_changed")
        }
        #: field_changed rules by (object, field): an update looks only at the rules
        #: whose field it changed
        self._on_field: dict[tuple[str, str], list[Rule]] = {}
        for (obj, event), rules in self._by.items():
            if event == "field_changed":
                for rule in rules:
                    name = split_path(rule.workflow.trigger.field or "")[1]
                    self._on_field.setdefault((obj, name), []).append(rule)
        #: per rule, each action with the column of its own record it changes (or None)
        self._plans: dict[str, list[tuple[Any, tuple[str, str] | None]]] = {
            rule.code: [(action, _own_action(rule, action)) for action in rule.workflow.actions]
            for rules in self._by.values()
            for rule in rules
        }

    @classmethod
    def of(cls, doc: ConfigDocument) -> RuleSet:
        return cls(doc.workflows, (f"{bp.object}.{bp.code}" for bp in doc.blueprints))

    def rules(self, obj: str, event: str) -> list[Rule]:
        return self._by.get((obj, event), [])

    def watches(self, obj: str, event: str, changed: Iterable[str] | None = None) -> bool:
        """Whether a write of this kind can fire any rule (the write path's fast exit)."""
        if event == "created":
            return bool(self._by.get((obj, "created")))
        if self._by.get((obj, "updated")):
            return True
        if not self._by.get((obj, "field_changed")):
            return False
        if changed is None:
            return True
        on_field = self._on_field
        return any((obj, name) in on_field for name in changed)

    def _fired_by(self, obj: str, event: str, changed: set[str]) -> list[Rule]:
        if event == "created":
            return self.rules(obj, "created")
        out = list(self.rules(obj, "updated"))
        if len(changed) < len(self._on_field):
            hits = {id(r) for name in changed for r in self._on_field.get((obj, name), ())}
        else:
            hits = {
                id(r)
                for (o, name), rules in self._on_field.items()
                if o == obj and name in changed
                for r in rules
            }
        if hits:  # in configuration order, as before the index
            out += [r for r in self.rules(obj, "field_changed") if id(r) in hits]
        return out

    def batch_runner(
        self,
        obj: str,
        event: str,
        changed: Iterable[str],
        *,
        coerce: Coerce | None = None,
        limit: int = 4096,
    ) -> Callable[[dict[str, Any]], list[Firing]]:
        """:meth:`run` for many rows of one bulk write (a CSV import's new rows, no
        related records): the same firings and the same changes to each row, worked out
        once per distinct *shape* of row and replayed for the others.

        A row's shape is what the outcome depends on: the truth of every condition of
        the object's rules on a field no rule of it writes (those fields do not change
        while the rules run), and the values of the columns its rules write (the
        conditions on them and the changes follow from those). Rows of one shape share
        the returned firings (do not change them); firings with effects on other records
        are never shared (each row's are carried out, and may record errors, on their
        own). At most ``limit`` shapes are remembered."""
        names = list(changed)
        rules = [r for (o, _e), rs in self._by.items() if o == obj for r in rs]
        written = sorted(
            {own[0] for r in rules for _a, own in self._plans[r.code] if own is not None}
        )
        #: per condition field not written by a rule: its reader and its conditions,
        #: each distinct value's outcomes remembered
        by_field: dict[
            str, tuple[Callable[[Mapping[str, Any]], Any], dict[tuple[str, str], tuple[str, Any]]]
        ] = {}
        for rule in rules:
            for (o, name, column), (_o, reader, op, wanted) in zip(
                rule.fields, rule._checks, strict=True
            ):
                if o == obj and column not in written:
                    by_field.setdefault(name, (reader, {}))[1].setdefault(
                        (op, repr(wanted)), (op, wanted)
                    )
        readers: list[
            tuple[
                Callable[[Mapping[str, Any]], Any],
                tuple[tuple[str, Any], ...],
                dict[Any, tuple[bool, ...]],
            ]
        ] = [(reader, tuple(conds.values()), {}) for reader, conds in by_field.values()]
        memo: dict[Any, tuple[list[Firing], dict[str, Any]]] = {}

        def outcomes(row: dict[str, Any]) -> tuple[Any, ...]:
            out: list[Any] = []
            for reader, conds, seen in readers:
                value = reader(row)
                known = seen.get(value)
                if known is None:
                    known = tuple([test(op, value, wanted) for op, wanted in conds])
                    if len(seen) < limit:
                        seen[value] = known
                out.append(known)
            return tuple(out)

        def run(row: dict[str, Any]) -> list[Firing]:
            try:
                key = (outcomes(row), tuple([row.get(c) for c in written]))
                known = memo.get(key)
            except TypeError:  # a value that cannot be a key (a custom record's data)
                return self.run(obj, event, row, names, coerce=coerce)
            if known is not None:
                row.update(known[1])
                return known[0]
            firings = self.run(obj, event, row, names, coerce=coerce)
            if len(memo) < limit and not any(f.effects for f in firings):
                memo[key] = (firings, {c: row[c] for f in firings for c in f.changes})
            return firings

        return run

    def run(
        self,
        obj: str,
        event: str,
        row: dict[str, Any],
        changed: Iterable[str],
        *,
        related: Related | None = None,
        coerce: Coerce | None = None,
    ) -> list[Firing]:
        """Fire the rules of a write on ``row`` (changed in place by the rules' own-record
        actions); ``changed``: the fields the write changed (any, for ``created``).

        Returns the firings in order. Conditions see the record after the write and
        after the earlier rules' changes.
        """
        firings: list[Firing] = []
        fired: set[str] = set()
        cascades = bool(self._cascades.get(obj))
        changed_by: dict[str, str] = {name: "" for name in changed} if cascades else {}
        current = set(changed_by) if cascades else set(changed)
        for depth in range(MAX_DEPTH + 1):
            round_changes: dict[str, str] = {}
            for rule in self._fired_by(obj, event if depth == 0 else "updated", current):
                if rule.code in fired:
                    causes = {changed_by.get(n, "") for n in self._triggers(rule, current)}
                    if causes - {rule.code}:
                        firings.append(
                            Firing(
                                rule.code,
                                depth,
                                errors=[
                                    "cycle cut: fired again by "
                                    + ", ".join(sorted(c for c in causes if c))
                                ],
                            )
                        )
                    continue
                if not rule.matches(row, related):
                    continue
                fired.add(rule.code)
                firing = self.fire(rule, row, coerce, depth)
                firings.append(firing)
                if cascades:
                    for column in firing.changes:
                        for name in _fields_of(column, firing.changes[column]):
                            round_changes[name] = rule.code
            if not round_changes:
                return firings
            if depth == MAX_DEPTH:
                firings.append(
                    Firing(
                        "",
                        depth,
                        errors=[f"cut after {MAX_DEPTH} rounds of rule changes on one record"],
                    )
                )
                return firings
            changed_by.update(round_changes)
            current = set(round_changes)
        return firings

    @staticmethod
    def _triggers(rule: Rule, current: set[str]) -> set[str]:
        if rule.workflow.trigger.event == "field_changed":
            return {split_path(rule.workflow.trigger.field or "")[1]} & current
        return current

    def fire(
        self, rule: Rule, row: dict[str, Any], coerce: Coerce | None = None, depth: int = 0
    ) -> Firing:
        """Carry out one rule's actions on ``row`` (no conditions, no cascade: a date
        firing, whose record was not written)."""
        firing = Firing(rule.code, depth)
        plan = self._plans.get(rule.code)
        if plan is None:  # a rule from outside this set (one fired by hand)
            plan = [(action, _own_action(rule, action)) for action in rule.workflow.actions]
        for action, own in plan:
            try:
                if own is None:
                    firing.effects.append(_effect(rule, action))
                    continue
                column, name = own
                if f"{rule.object}.{name}" in self.blueprint_fields:
                    raise ActionError(
                        f"{name} is a blueprint state: it moves by transitions, not by a workflow"
                    )
                old = row.get(column)
                new = _new_value(action, old, name)
                if action.type == "set_field" and column != "checkboxes" and coerce is not None:
                    new = coerce(rule.object, column, new)
                if new != old:
                    row[column] = new
                    if column in firing.changes:
                        firing.changes[column][1] = new
                    else:
                        firing.changes[column] = [old, new]
            except ActionError as exc:
                firing.errors.append(f"{action.type}: {exc}")
        return firing


def _fields_of(column: str, change: list[Any]) -> list[str]:
    """The condition fields a column change changes (a checkbox mask: its bits)."""
    if column == "checkboxes":
        old, new = int(change[0] or 0), int(change[1] or 0)
        diff = old ^ new
        return ["checkboxes", *(f"checkbox_{i + 1}" for i in range(48) if diff >> i & 1)]
    if column == "classifications":
        return ["classifications", "classification"]
    return [column]


def _new_value(action: Any, old: Any, name: str) -> Any:
    if action.type == "set_checkbox" or name.startswith("checkbox_"):
        index = action.index if action.type == "set_checkbox" else int(name[9:])
        on = action.checked if action.type == "set_checkbox" else bool(action.value)
        bit = 1 << (index - 1)
        mask = int(old or 0)
        return mask | bit if on else mask & ~bit
    if action.type == "set_field":
        if name == "classification":
            raise ActionError("classifications are added by add_classification")
        return action.value
    present = codes(old)  # add_classification
    if action.classification in present:
        return old
    return "," + ",".join([*present, action.classification]) + ","


def _effect(rule: Rule, action: Any) -> Effect:
    kind = action.type
    if kind == "notify":
        return Effect("notify", role=action.role, text=action.message)
    if kind == "create_activity":
        if rule.object not in ("contact", *CHILD_OF_CONTACT):
            raise ActionError(f"a {rule.object} has no contact to add an activity to")
        return Effect(
            "create_activity",
            kind_code=action.kind,
            text=action.content,
            due_in_days=action.due_in_days or 0,
        )
    target = "contact" if rule.object in CHILD_OF_CONTACT else rule.object
    if kind == "set_checkbox":
        if target != "contact":
            raise ActionError(f"a {rule.object} has no checkboxes (checkboxes are a contact's)")
        return Effect("set", target, {"checkboxes": {str(action.index): action.checked}})
    if kind == "add_classification":
        if target not in _OWN_CLASSIFICATIONS:
            raise ActionError(f"a {rule.object} has no classifications")
        return Effect("set", target, {"add_classification": action.classification})
    obj, name = split_path(action.field)  # set_field on a parent record
    parent = {
        "activity": "contact",
        "purchase": "contact",
        "contact": "company",
        "department": "company",
    }.get(rule.object)
    if obj != parent:
        raise ActionError(
            f"{action.field}: a {rule.object} rule sets its own fields or its "
            f"{parent or 'parent'}'s"
        )
    return Effect("set", obj, {name: action.value})


# ---------------------------------------------------------------- dates


def due_on(trigger_days: int | None, yearly: bool | None, value: Any, today: date) -> date | None:
    """The day a date trigger fires for a record whose date field holds ``value``
    (``YYYY-MM-DD``), in ``today``'s year for a yearly trigger (29 February: the 28th in
    other years); None when the field is empty or not a date."""
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    offset = timedelta(days=trigger_days or 0)
    if not yearly:
        return day + offset
    best: date | None = None
    for year in (today.year - 1, today.year, today.year + 1):
        try:
            anniversary = day.replace(year=year)
        except ValueError:  # 29 February
            anniversary = date(year, 2, 28)
        candidate = anniversary + offset
        if best is None or abs((candidate - today).days) < abs((best - today).days):
            best = candidate
    return best


# ---------------------------------------------------------------- configuration checks


def _writes(wf: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(object, field, value) each action of a workflow (as data) writes; a created
    activity is ``("activity", "*", None)``."""
    obj = wf["object"]
    out: list[tuple[str, str, Any]] = []
    for action in wf["actions"]:
        kind = action["type"]
        target = "contact" if obj in CHILD_OF_CONTACT else obj
        if kind == "set_field":
            o, name = split_path(action["field"])
            out.append((o, name, action["value"]))
        elif kind == "set_checkbox":
            out.append((target, f"checkbox_{action['index']}", action["checked"]))
        elif kind == "add_classification":
            out.append((target, "classification", None))
        elif kind == "create_activity":
            out.append(("activity", "*", {"kind": action["kind"], "content": action["content"]}))
    return out


def _may_match(wf: Mapping[str, Any], known: Mapping[str, Any]) -> bool:
    """Whether a rule's conditions can hold for a new record of which ``known`` fields are
    known (the rest could be anything)."""
    decided: list[bool | None] = []
    for cond in wf["conditions"]["rules"]:
        obj, name = split_path(cond["field"])
        if obj == wf["object"] and name in known:
            decided.append(test(cond["op"], known[name], cond["value"]))
        else:
            decided.append(None)
    if not decided:
        return True
    if wf["conditions"]["match"] == "all":
        return False not in decided
    return any(d is not False for d in decided)


def _fired_by_write(wf: Mapping[str, Any], obj: str, name: str, value: Any) -> bool:
    trigger = wf["trigger"]
    if wf["object"] != obj:
        return False
    if name == "*":
        return trigger["event"] == "created" and _may_match(wf, value)
    if trigger["event"] == "updated":
        return True
    return trigger["event"] == "field_changed" and split_path(trigger["field"] or "")[1] in (
        name,
        "checkboxes" if name.startswith("checkbox_") else name,
    )


def cycles(doc: Mapping[str, Any]) -> list[str]:
    """Problems with workflow chains that would run forever: a cycle of active rules that
    creates a record on every turn, or that sets one field to different values in turn."""
    flows = [wf for wf in doc["workflows"] if wf.get("active", True)]
    edges: dict[str, set[str]] = {wf["code"]: set() for wf in flows}
    #: the edges a created record makes: a cycle through one of them creates records forever
    by_creating: dict[str, set[str]] = {wf["code"]: set() for wf in flows}
    for a in flows:
        for obj, name, value in _writes(a):
            for b in flows:
                if _fired_by_write(b, obj, name, value):
                    edges[a["code"]].add(b["code"])
                    if name == "*":
                        by_creating[a["code"]].add(b["code"])
    by_code = {wf["code"]: wf for wf in flows}
    problems: list[str] = []
    for component in _strong_components(edges):
        if len(component) == 1:
            (only,) = component
            if only not in edges[only]:
                continue
        members = sorted(component)
        writes = [w for code in members for w in _writes(by_code[code])]
        values: dict[tuple[str, str], set[str]] = {}
        for obj, name, value in writes:
            if name != "*":
                values.setdefault((obj, name), set()).add(repr(value))
        creates = any(by_creating[code] & component for code in members)
        fights = sorted(f"{o}.{n}" for (o, n), v in values.items() if len(v) > 1)
        if creates:
            problems.append(
                f"workflows: {', '.join(members)} create activities in a cycle "
                "(each one fires the next forever); break the chain"
            )
        elif fights:
            problems.append(
                f"workflows: {', '.join(members)} set {', '.join(fights)} to "
                "different values in a cycle; break the chain"
            )
    return problems


def _strong_components(edges: Mapping[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    out.append(component)
    return out
