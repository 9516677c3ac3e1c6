"""Three-way merge of configuration documents: a template's next version onto a tenant.

``base`` is what the tenant last took from a source, ``ours`` the tenant's
document now, ``theirs`` the source's next version. Items are matched by their
stable key (as in :mod:`provisioner.config.diff`) and merged per item and per
attribute:

* changed only by theirs -> taken; only by ours -> kept; by both the same way
  -> nothing to do; by both differently -> a **conflict**;
* removed by theirs and unchanged by ours -> removed; removed by one side and
  changed by the other -> a conflict.

Addresses name what was merged: ``mode``, ``labels.contact.name``,
``checkboxes.2.label``, ``picklists.plan.values.gold``, ``workflows.vip_gold``,
``input_rules.phone_format``. A resolution (``--keep`` / ``--take``) given for
an address also covers everything under it (``checkboxes.2`` covers
``checkboxes.2.label``).

Workflows follow the safe-activation rule of :mod:`provisioner.config.merge`:
``active`` is never taken from theirs (a rule the tenant has keeps its state;
a new one arrives paused).

The result is always a consistent document (:func:`references.check`): when
taking theirs' changes to a section would break a cross-reference (a workflow
of ours naming a checkbox theirs disabled, ...), that section stays ours and a
``references`` conflict says why; only keeping ours resolves it.

    >>> from provisioner.config.defaults import default_document
    >>> base = default_document().to_data()
    >>> ours = {**base, "labels": {**base["labels"], "contact.name": "お客様名"}}
    >>> theirs = {**base, "mode": "individual"}
    >>> up = merge3(base, ours, theirs)
    >>> up.result["mode"], up.result["labels"]["contact.name"], up.taken, up.kept
    ('individual', 'お客様名', ['mode'], ['labels.contact.name'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from provisioner.config import references
from provisioner.config.diff import COLLECTIONS, NESTED
from provisioner.config.document import SECTION_NAMES
from provisioner.config.memo import IdentityMemo
from provisioner.errors import ValidationFailed

Side = Literal["ours", "theirs"]
SIDES: tuple[Side, ...] = ("ours", "theirs")


class _Missing:
    """An item or attribute that a side does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Conflict:
    """Both sides changed ``address`` differently (or one removed what the other changed)."""

    address: str
    base: Any
    ours: Any
    theirs: Any
    #: changed (both changed it), removed (one side removed it), references (taking
    #: theirs would leave the document inconsistent: ``problems`` says how)
    kind: str = "changed"
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            return None if value is MISSING else value

        out = {
            "address": self.address,
            "kind": self.kind,
            "base": plain(self.base),
            "ours": plain(self.ours),
            "theirs": plain(self.theirs),
        }
        if self.problems:
            out["problems"] = list(self.problems)
        return out

    def describe(self) -> str:
        if self.kind == "references":
            return f"{self.address}: theirs would break references ({'; '.join(self.problems)})"
        if self.kind == "removed":
            side = "ours" if self.ours is MISSING else "theirs"
            other = "theirs" if side == "ours" else "ours"
            return f"{self.address}: removed by {side}, changed by {other}"
        return (
            f"{self.address}: base {_short(self.base)}, ours {_short(self.ours)}, "
            f"theirs {_short(self.theirs)}"
        )


def _short(value: Any, limit: int = 40) -> str:
    text = "(absent)" if value is MISSING else (value if isinstance(value, str) else repr(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Upgrade:
    """A three-way merge: the resulting document and what happened to each address."""

    result: dict[str, Any]
    taken: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    #: unresolved conflicts (an upgrade with any is refused)
    conflicts: list[Conflict] = field(default_factory=list)
    #: conflicts resolved by the caller: address -> the side chosen
    resolved: dict[str, Side] = field(default_factory=dict)
    #: True when a merged list is longer or shorter than on either side: its length limits
    #: (``max_length``, ``min_length``) need checking again. Items assembled attribute by
    #: attribute need no structure check: each attribute is valid as one side had it, and
    #: what ties attributes together is a reference (checked on every result).
    mixed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken": list(self.taken),
            "kept": list(self.kept),
            "conflicts": [c.to_dict() for c in self.conflicts],
            "resolved": dict(self.resolved),
        }


class _Resolver:
    def __init__(self, keep: Iterable[str], take: Iterable[str], prefer: Side | None) -> None:
        self.choices: dict[str, Side] = {a: "ours" for a in keep}
        for address in take:
            if self.choices.get(address) == "ours":
                raise ValidationFailed(f"{address!r} is given to both --keep and --take")
            self.choices[address] = "theirs"
        self.prefer = prefer
        self.used: set[str] = set()

    def side(self, address: str, *, references: bool = False) -> Side | None:
        probe = address
        while True:
            chosen = self.choices.get(probe)
            if chosen is not None:
                self.used.add(probe)
                return chosen
            if "." not in probe:
                break
            probe = probe.rsplit(".", 1)[0]
        if references:  # only keeping ours can resolve a broken reference
            return "ours" if self.prefer == "ours" else None
        return self.prefer


def _changes(address: str, old: Any, new: Any) -> Iterable[str]:
    """The addresses at or under ``address`` that differ between two versions of an item."""
    if old == new:
        return
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        yield address
        return
    for name in [*old, *(n for n in new if n not in old)]:
        a, b = old.get(name, MISSING), new.get(name, MISSING)
        if a == b:
            continue
        if name in NESTED and isinstance(a, list) and isinstance(b, list):
            key = NESTED[name]
            ak, bk = {str(i[key]): i for i in a}, {str(i[key]): i for i in b}
            for k in [*ak, *(k for k in bk if k not in ak)]:
                x, y = ak.get(k, MISSING), bk.get(k, MISSING)
                if x != y:
                    yield from _changes(f"{address}.{name}.{k}", x, y)
        else:
            yield f"{address}.{name}"


class _Merge:
    def __init__(self, resolver: _Resolver) -> None:
        self.resolver = resolver
        self.up = Upgrade(result={})

    # ------------------------------------------------------------------ leaves

    def conflict(self, address: str, b: Any, o: Any, t: Any, kind: str = "changed") -> Any:
        side = self.resolver.side(address)
        if side is None:
            self.up.conflicts.append(Conflict(address, b, o, t, kind))
            return o
        self.up.resolved[address] = side
        return o if side == "ours" else t

    def scalar(self, address: str, b: Any, o: Any, t: Any) -> Any:
        if o == t:
            return o
        if o == b:
            self.up.taken.append(address)
            return t
        if t == b:
            self.up.kept.append(address)
            return o
        return self.conflict(address, b, o, t)

    # ------------------------------------------------------------------ items

    def item(self, address: str, b: Any, o: Any, t: Any) -> Any:
        """One keyed item (a dict) or MISSING, merged per attribute."""
        if o == t:
            return o
        if o == b:
            self.up.taken.extend(_changes(address, b, t))
            return t
        if t == b:
            self.up.kept.extend(_changes(address, b, o))
            return o
        if o is MISSING or t is MISSING:
            return self.conflict(address, b, o, t, "removed")
        return self.attributes(address, {} if b is MISSING else b, o, t)

    def attributes(
        self, address: str, b: Mapping[str, Any], o: Mapping[str, Any], t: Mapping[str, Any]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in [*o, *(n for n in t if n not in o)]:
            bv, ov, tv = b.get(name, MISSING), o.get(name, MISSING), t.get(name, MISSING)
            where = f"{address}.{name}"
            if name in NESTED and isinstance(ov, list) and isinstance(tv, list):
                value = self.keyed(where, bv if isinstance(bv, list) else [], ov, tv, NESTED[name])
            else:
                value = self.scalar(where, bv, ov, tv)
            if value is not MISSING:
                out[name] = value
        return out

    def keyed(self, address: str, b: list[Any], o: list[Any], t: list[Any], key: str) -> list[Any]:
        """A keyed list merged item by item; order: the side that reordered nothing yields.

        One pass over the items (no whole-list comparisons: they would cost as much
        again); a list only one side changed comes back as that side's list itself.
        """
        if o is t:
            return o
        bk = {str(i[key]): i for i in b}
        ok = {str(i[key]): i for i in o}
        tk = {str(i[key]): i for i in t}
        up = self.up
        before = (len(up.taken), len(up.kept), len(up.conflicts), len(up.resolved))
        merged: dict[str, Any] = {}
        for k in [
            *ok,
            *(k for k in tk if k not in ok),
            *(k for k in bk if k not in ok and k not in tk),
        ]:
            value = self.item(
                f"{address}.{k}", bk.get(k, MISSING), ok.get(k, MISSING), tk.get(k, MISSING)
            )
            if value is not MISSING:
                merged[k] = value
        took, kept, conflicts, resolved = (
            len(up.taken) > before[0],
            len(up.kept) > before[1],
            len(up.conflicts) > before[2],
            len(up.resolved) > before[3],
        )
        same_order = list(ok) == list(bk)
        if not (kept or conflicts or resolved) and same_order:
            return t  # ours changed nothing here: theirs as it is
        if not (took or conflicts or resolved) and list(tk) == list(bk):
            return o  # theirs changed nothing here: ours as it is
        if not min(len(o), len(t)) <= len(merged) <= max(len(o), len(t)):
            up.mixed = True  # longer or shorter than either side: check list limits
        if same_order:  # ours kept the base order: follow theirs
            order = [k for k in tk if k in merged] + [k for k in merged if k not in tk]
        else:
            order = list(merged)
        return [merged[k] for k in order]

    def mapping(
        self, address: str, b: Mapping[str, Any], o: Mapping[str, Any], t: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A flat map of scalars (labels): each key is an item."""
        if o == t:
            return dict(o)
        out: dict[str, Any] = {}
        for k in [*o, *(k for k in t if k not in o)]:
            value = self.scalar(
                f"{address}.{k}", b.get(k, MISSING), o.get(k, MISSING), t.get(k, MISSING)
            )
            if value is not MISSING:
                out[k] = value
        if o == b:  # follow theirs' key order when ours changed nothing
            return {
                k: out[k] for k in [*(k for k in t if k in out), *(k for k in out if k not in t)]
            }
        return out

    # ------------------------------------------------------------------ sections

    def section(self, name: str, b: Any, o: Any, t: Any) -> Any:
        if o == t:
            return o
        if name in COLLECTIONS:
            return self.keyed(name, b, o, t, COLLECTIONS[name])
        if name == "classifications":
            return {
                kind: self.keyed(
                    f"{name}.{kind}", b.get(kind, []), o.get(kind, []), t.get(kind, []), "code"
                )
                for kind in ("customer", "product")
            }
        if name == "labels":
            return self.mapping(name, b, o, t)
        if isinstance(o, Mapping) and isinstance(t, Mapping) and isinstance(b, Mapping):
            if o == b or t == b:
                return self.item(name, b, o, t)
            return self.attributes(name, b, o, t)
        return self.scalar(name, b, o, t)


def _with_ours_activation(items: list[Any] | None, ours: Mapping[str, bool]) -> list[Any]:
    """Workflows with ``active`` as the target has it (False for rules it lacks)."""
    if not items:
        return items or []
    out = []
    for wf in items:
        active = ours.get(wf["code"], False)
        out.append(wf if wf.get("active") == active else {**wf, "active": active})
    return out


def _section_merge(resolver: _Resolver, name: str, b: Any, o: Any, t: Any) -> tuple[Any, Upgrade]:
    """One section merged: (its value, what happened to its addresses)."""
    if b is None:  # no common ancestor for this section: every difference is a conflict
        b = [] if isinstance(o, list) else {} if isinstance(o, dict) else MISSING
    if name == "workflows":
        active = {wf["code"]: wf["active"] for wf in o}
        t = _with_ours_activation(t, active)
        b = _with_ours_activation(b, active)
    merge = _Merge(resolver)
    return merge.section(name, b, o, t), merge.up


def merge3(
    base: Mapping[str, Any],
    ours: Mapping[str, Any],
    theirs: Mapping[str, Any],
    *,
    sections: Iterable[str] | None = None,
    keep: Iterable[str] = (),
    take: Iterable[str] = (),
    prefer: Side | None = None,
    memo: IdentityMemo | None = None,
) -> Upgrade:
    """Merge ``theirs`` onto ``ours`` relative to ``base`` (whole documents, plain data).

    ``sections`` limits the merge (the others stay ours); a section ``theirs``
    lacks stays ours. ``keep``/``take`` resolve conflicts at or under the given
    addresses; ``prefer`` resolves the rest. An address given that names no
    conflict is refused (a typo must not pass silently).

    ``memo``: section merges (and reference checks) remembered by the identity of
    their inputs, for many merges of one template (a rollout: a section a tenant did
    not touch is the same object in every tenant's document and its base). Used only
    without ``keep``/``take``, where a section's merge depends on its inputs alone.
    The inputs must not be changed while the memo lives; the result may share them.
    """
    if prefer is not None and prefer not in SIDES:
        raise ValidationFailed(f"--prefer must be ours or theirs, not {prefer!r}")
    resolver = _Resolver(keep, take, prefer)
    if resolver.choices:
        memo = None
    wanted = SECTION_NAMES if sections is None else tuple(sections)
    result = dict(ours)
    up = Upgrade(result=result)
    touched: list[str] = []
    for name in SECTION_NAMES:
        if name not in wanted or theirs.get(name) is None or name not in ours:
            continue
        b: Any = base.get(name)
        o: Any = ours[name]
        t: Any = theirs[name]
        if memo is None:
            value, part = _section_merge(resolver, name, b, o, t)
        else:
            value, part = memo.get(
                ("merge3", name, prefer),
                (b, o, t),
                lambda: _section_merge(resolver, name, b, o, t),  # noqa: B023 - called at once
            )
        up.taken.extend(part.taken)
        up.kept.extend(part.kept)
        up.conflicts.extend(part.conflicts)
        up.resolved.update(part.resolved)
        up.mixed = up.mixed or part.mixed
        if value is not o:
            touched.append(name)
        result[name] = value
    _keep_consistent(up, ours, theirs, touched, resolver, memo)
    unused = sorted(set(resolver.choices) - resolver.used)
    if unused:
        raise ValidationFailed(
            f"no conflict at {', '.join(unused)}",
            hint="'provisioner inbox show ID' lists the conflicts and their addresses",
        )
    return up


def _keep_consistent(
    up: Upgrade,
    ours: Mapping[str, Any],
    theirs: Mapping[str, Any],
    touched: list[str],
    resolver: _Resolver,
    memo: IdentityMemo | None = None,
) -> None:
    """Hold sections back (ours) until the result's references hold; each is a conflict."""
    problems = references.check(up.result, memo=memo)
    held: list[str] = []
    while problems:
        candidates = [s for s in touched if s not in held]
        if not candidates:  # pragma: no cover - ours alone is consistent
            raise ValidationFailed("the merged configuration is inconsistent", problems=problems)

        def left(name: str) -> int:  # problems left with this section held back
            return len(references.check({**up.result, name: ours[name]}, memo=memo))

        suspects = [min(candidates, key=left)]  # the fewest sections held back
        for name in suspects:
            why = tuple(problems)
            if resolver.side(name, references=True) == "ours":
                up.resolved[name] = "ours"
            else:  # taking theirs here cannot be forced: it would not be a valid document
                up.conflicts.append(Conflict(name, MISSING, MISSING, MISSING, "references", why))
            up.result[name] = ours[name]
            held.append(name)
            prefix = name + "."
            up.taken = [a for a in up.taken if a != name and not a.startswith(prefix)]
            up.conflicts = [
                c
                for c in up.conflicts
                if c.kind == "references" or not (c.address == name or c.address.startswith(prefix))
            ]
        problems = references.check(up.result, memo=memo)
