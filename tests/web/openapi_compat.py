"""What a change of the OpenAPI document breaks for existing clients.

A client generated from the old document keeps working while every operation, every
status and every answer field it knows is still there, and the server accepts every
request it was built to send. :func:`breaking_changes` lists what is not so; the
compatibility promise (docs/http.md) allows such changes only with a new major version
(``info.version``).
"""

from __future__ import annotations

from typing import Any

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def major(doc: dict[str, Any]) -> int:
    return int(str(doc["info"]["version"]).split(".")[0])


def _resolve(doc: dict[str, Any], schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def fields(
    doc: dict[str, Any], schema: Any, prefix: str = "", seen: frozenset[str] = frozenset()
) -> dict[str, bool]:
    """Every field path of a schema (``record.id``, ``items[].name``) -> whether required."""
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if ref in seen:
        return {}
    seen = seen | {ref} if ref else seen
    schema = _resolve(doc, schema)
    if not isinstance(schema, dict):
        return {}
    out: dict[str, bool] = {}
    for alternative in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        out |= fields(doc, alternative, prefix, seen)
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        out[path] = name in required
        out |= fields(doc, sub, f"{path}.", seen)
    if "items" in schema:
        out |= fields(doc, schema["items"], f"{prefix}[].", seen)
    return out


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": op
        for path, ops in doc.get("paths", {}).items()
        for method, op in ops.items()
        if method in METHODS
    }


def _body(doc: dict[str, Any], op: dict[str, Any]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for media in op.get("requestBody", {}).get("content", {}).values():
        out |= fields(doc, media.get("schema", {}))
    return out


def _params(op: dict[str, Any]) -> dict[str, bool]:
    return {f"{p['in']}:{p['name']}": bool(p.get("required")) for p in op.get("parameters", [])}


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What ``new`` removes or newly requires, compared with ``old`` (empty: compatible)."""
    problems: list[str] = []
    new_ops = _operations(new)
    for label, op in _operations(old).items():
        now = new_ops.get(label)
        if now is None:
            problems.append(f"{label}: operation removed")
            continue
        for status, response in op.get("responses", {}).items():
            if status not in now.get("responses", {}):
                problems.append(f"{label}: status {status} removed")
                continue
            for media, content in response.get("content", {}).items():
                then = fields(old, content.get("schema", {}))
                current_content = now["responses"][status].get("content", {}).get(media)
                if current_content is None:
                    problems.append(f"{label} {status}: {media} answer removed")
                    continue
                current = fields(new, current_content.get("schema", {}))
                problems += [
                    f"{label} {status}: field {f} removed" for f in then if f not in current
                ]
        old_body, new_body = _body(old, op), _body(new, now)
        problems += [f"{label}: request field {f} removed" for f in old_body if f not in new_body]
        for f, req in new_body.items():
            parent = f.rpartition(".")[0].removesuffix("[]").removesuffix(".")
            if req and not old_body.get(f, False) and (not parent or parent in old_body):
                problems.append(f"{label}: request field {f} is newly required")
        old_params, new_params = _params(op), _params(now)
        problems += [f"{label}: parameter {p} removed" for p in old_params if p not in new_params]
        problems += [
            f"{label}: parameter {p} is newly required"
            for p, req in new_params.items()
            if req and not old_params.get(p, False)
        ]
    return problems


def compatible(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The breaking changes that ``new``'s version does not allow (a new major allows all)."""
    if major(new) > major(old):
        return []
    return breaking_changes(old, new)
