"""Text renderings of a configuration and of a transfer plan, for people."""

from __future__ import annotations

from typing import Any

from provisioner.config.diff import Change
from provisioner.services.crm.impact import describe, describe_workflow


def render_config(slug: str, version: int, data: dict[str, Any]) -> str:
    lines = [f"{slug}: configuration version {version} ({data['mode']} customers)"]
    enabled = [c for c in data["checkboxes"] if c["enabled"]]
    lines.append(f"checkboxes ({len(enabled)} of {len(data['checkboxes'])} enabled):")
    lines.append("  " + "  ".join(f"{c['index']}:{c['label']}" for c in enabled))
    lines.append("memo fields:")
    lines.append(
        "  "
        + "  ".join(
            f"{m['index']}:{m['label']}" + (f"[{m['picklist']}]" if m["type"] == "picklist" else "")
            for m in data["memo_fields"]
        )
    )
    lines.append(f"picklists ({len(data['picklists'])}):")
    for p in data["picklists"][:20]:
        values = ", ".join(v["label"] for v in p["values"][:12])
        more = len(p["values"]) - 12
        lines.append(f"  {p['code']} ({p['label']}): {values}" + (f", +{more}" if more > 0 else ""))
    if len(data["picklists"]) > 20:
        lines.append(f"  ... and {len(data['picklists']) - 20} more")
    for kind in ("customer", "product"):
        nodes = data["classifications"][kind]
        if nodes:
            lines.append(f"{kind} classifications: " + ", ".join(n["label"] for n in nodes))
    for name in ("custom_databases", "workflows", "blueprints", "roles"):
        items = data[name]
        if items:
            lines.append(
                f"{name.replace('_', ' ')} ({len(items)}): "
                + ", ".join(i["label"] for i in items[:10])
                + (" ..." if len(items) > 10 else "")
            )
    rules = data["input_rules"]
    lines.append(
        f"input rules: company suffix {rules['company_suffix']}, phone "
        f"{rules['phone_format']}, width normalisation "
        f"{'on' if rules['normalize_width'] else 'off'}"
    )
    lines.append("(--json prints the whole document)")
    return "\n".join(lines)


def render_plan(data: dict[str, Any], *, per_section: int | None = None) -> str:
    """The plan as text; ``per_section`` caps the lines shown per section."""
    plan = data["plan"]
    sections = plan["sections"]
    compared = "all sections" if len(sections) >= 12 else ", ".join(sections)
    lines = [
        f"transfer {data['id']}: {data['status']}, from {data['source_tenant']} "
        f"(its config version {data['source_version']}), received {data['received_at']} "
        f"by {data['received_by']}",
        f"signed by key {data['signer_key_id']}, bundle digest {data['bundle_digest']}",
        f"plan against configuration version {plan['base_version']} "
        f"(mode {plan['mode']}; {compared})",
    ]
    if "upgrade" in plan:
        lines.extend(render_upgrade(plan["upgrade"]))
    if not plan["changes"]:
        lines.append("no changes: the configuration already matches")
    current = None
    shown = 0
    for raw in plan["changes"]:
        change = Change(
            raw["section"],
            raw["key"],
            raw["op"],
            raw["before"],
            raw["after"],
            tuple(raw["details"]),
        )
        if change.section != current:
            current = change.section
            counts = plan["summary"].get(current, {})
            lines.append(f"\n{current}: " + ", ".join(f"{n} {op}" for op, n in counts.items() if n))
            shown = 0
        shown += 1
        if per_section is not None and shown > per_section:
            if shown == per_section + 1:
                total = sum(plan["summary"].get(current, {}).values())
                lines.append(f"  ... and {total - per_section} more")
            continue
        mark = {"added": "+", "changed": "~", "removed": "-"}[change.op]
        lines.append(
            f"  {mark} " + change.describe().split(": ", 1)[-1]
            if change.key == ""
            else f"  {mark} [{change.key}] " + change.describe().split("]: ", 1)[-1]
        )
    lines.extend(render_impact(plan.get("impact")))
    return "\n".join(lines)


def _value(value: Any, limit: int = 40) -> str:
    text = "(absent)" if value is None else value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_upgrade(up: dict[str, Any], *, per_list: int = 20) -> list[str]:
    """A three-way plan: its base, what is taken, kept, and the conflicts (all of them)."""
    lines = [
        f"three-way upgrade from {up['source']}: base = its version "
        f"{up['source_version']} (transfer {up['transfer']})"
    ]
    for name, what in (
        ("taken", "taken (changed only by the source)"),
        ("kept", "kept (changed only here)"),
    ):
        items = up[name]
        lines.append(f"{what}: {len(items)}")
        lines.extend(f"  {a}" for a in items[:per_list])
        if len(items) > per_list:
            lines.append(f"  ... and {len(items) - per_list} more (--json lists them all)")
    conflicts = up["conflicts"]
    lines.append(f"conflicts: {len(conflicts)}")
    for c in conflicts:
        if c["kind"] == "references":
            lines.append(
                f"  ! {c['address']}: taking theirs would break references: "
                + "; ".join(c.get("problems", [])[:3])
            )
        elif c["kind"] == "removed":
            side = "ours" if c["ours"] is None else "theirs"
            lines.append(f"  ! {c['address']}: removed by {side}, changed by the other side")
        else:
            lines.append(
                f"  ! {c['address']}: base {_value(c['base'])} | ours "
                f"{_value(c['ours'])} | theirs {_value(c['theirs'])}"
            )
    for address, side in (up.get("resolved") or {}).items():
        lines.append(f"  resolved {address}: {side}")
    if conflicts:
        lines.append(
            "  approve with --keep ADDRESS (ours) / --take ADDRESS (theirs), or "
            "--prefer ours|theirs for the rest"
        )
    return lines


def render_impact(report: dict[str, Any] | None) -> list[str]:
    """The plan's effect on the tenant's records, blocking items first; then the incoming
    workflows and how many records each would match."""
    lines = _render_items(report)
    flows = (report or {}).get("workflows") or []
    if flows:
        lines.append("\nincoming workflows (records their conditions match now):")
        lines += [f"  - {describe_workflow(item)}" for item in flows]
    return lines


def _render_items(report: dict[str, Any] | None) -> list[str]:
    if not report or not report["items"]:
        return ["\nrecords: no record holds anything this change removes or relabels"]
    items = sorted(report["items"], key=lambda i: not i["blocking"])
    lines = [f"\nrecords affected ({report['blocking']} blocking the approval):"]
    for item in items:
        mark = "!" if item["blocking"] else "i"
        lines.append(f"  {mark} {describe(item)}")
    if report["blocking"]:
        lines.append(
            "  approve with --remap PICKLIST.VALUE=NEWVALUE for each removed value, "
            "or --force to keep the records as they are"
        )
    return lines
