"""The web console: server-rendered pages over the same services as the API and the CLI.

login -> tenant selection (the first preselected) -> tenant home; a one-click
tenant switch in the header; copy keys; send; inbox with plan, data impact,
approve (mode, sections, remaps) or reject, each after a confirmation page, and
the rollback offered on the result; the configuration editor (labels, 48
checkboxes, memo fields, picklists, classifications); history with diff and
rollback; customer search and page; screen pop by phone number.

A page is a route here (``page_session`` + ``render``) and a template extending
``base.html``; its words come from :mod:`provisioner.web.i18n`; admin-only
controls are rendered under ``{% if admin %}``. docs/console.md walks through it.
The shared web plumbing is :mod:`provisioner.web.common`: this module never
imports the JSON API's.

Every form posts a CSRF token (see :mod:`provisioner.web.security`); the
session lives in a Secure, HttpOnly, SameSite=Lax cookie that expires with it.
Forms are turned into the service's input here and nowhere else decides
anything: permissions, validation and effects are the services'.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import FormData

from provisioner.clock import local_today
from provisioner.config.document import (
    CHECKBOX_COUNT,
    LABEL_KEYS,
    MEMO_COUNT,
    STANDARD_FIELDS,
    ConfigDocument,
)
from provisioner.db.models import Tenant
from provisioner.errors import PermissionDenied, ProvisionerError, ValidationFailed
from provisioner.numbers import parse_whole_number
from provisioner.services import actors, configs, copykeys, transfers, workflows
from provisioner.services.actors import Actor
from provisioner.services.context import Context, Provisioner
from provisioner.services.crm import records, scope
from provisioner.services.provisioning import auth, metering
from provisioner.web import common, i18n, present
from provisioner.web.security import (
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    acting,
    csrf_ok,
    csrf_token,
    login_csrf_ok,
    login_csrf_token,
    new_login_csrf,
)

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)

NOTICES = (
    "saved",
    "unchanged",
    "applied",
    "rejected",
    "rolled_back",
    "sent",
    "transfer_rolled_back",
    "workflow_activated",
    "workflow_paused",
    "moved",
    "notifications_read",
    "created",
    "created_duplicates",
    "activity_added",
    "purchase_added",
    "bulk_updated",
    "bulk_deleted",
    "user_saved",
    "user_removed",
    "department_added",
)


def _app(request: Request) -> Provisioner:
    return common.provisioner(request)


def _token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


def _safe_next(value: str | None) -> str:
    """Only a path on this site (no scheme, no //host) may be a redirect target."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _here(request: Request) -> str:
    """This page with its query (less the one-time notice): where a language switch returns."""
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "msg"])
    return request.url.path + (f"?{query}" if query else "")


def render(
    request: Request,
    name: str,
    data: dict[str, Any],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page of the layout (base.html): ``data`` plus what every page has.

    ``t``: the catalogue in the page's language; ``admin``: whether the user may use
    the admin-only controls (they are not offered to others; the services refuse them
    anyway); ``notice``: the result of the action that led here (focused on load).
    """
    lang = i18n.language(request)
    notice = request.query_params.get("msg")
    actor = data.get("actor")
    base = {
        "t": i18n.translator(lang),
        "lang": lang,
        "path": request.url.path,
        "here": _here(request),
        "notice": notice if notice in NOTICES else None,
        "admin": isinstance(actor, Actor) and actor.is_admin,
    }
    return templates.TemplateResponse(
        request, name, base | data, status_code=status, headers=headers
    )


def error_page(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    """The error in the layout: with the header and menu when the session is still valid."""
    data: dict[str, Any] = {"error": body, "status": status}
    # no session, or the database is what failed: the layout without the header
    with suppress(ProvisionerError, SQLAlchemyError), page_session(request) as (_c, _a, header):
        data = header | data
    return render(request, "error.html", data, status=status, headers=headers)


@contextmanager
def page_session(request: Request) -> Iterator[tuple[Context, Actor, dict[str, Any]]]:
    """The logged-in user in the selected tenant, and what every page's header shows."""
    token = _token(request)
    with acting(_app(request), token) as (ctx, actor):
        header = {
            "actor": actor,
            "csrf": csrf_token(token or ""),
            "tenants": auth.tenants_for(ctx, actor.user_id),
            "unread": workflows.unread_count(ctx, actor),
        }
        yield ctx, actor, header


async def posted(request: Request) -> FormData:
    """The form, once its CSRF token checks out against the session cookie."""
    form = await request.form()
    submitted = form.get("csrf")
    if not csrf_ok(_token(request), submitted if isinstance(submitted, str) else None):
        await form.close()  # an uploaded file's spool
        raise PermissionDenied(
            "the form has expired or did not come from this site",
            hint="reload the page and submit it again",
        )
    return form


def field(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else default


def done(path: str, notice: str) -> RedirectResponse:
    sep = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{sep}msg={notice}", status_code=303)


# --------------------------------------------------------------------------- language, login


@router.get("/lang/{code}")
def set_language(request: Request, code: str, next: str = "/") -> Response:
    response = RedirectResponse(_safe_next(next), status_code=303)
    if code in i18n.LANGS:
        response.set_cookie(
            LANG_COOKIE,
            code,
            max_age=365 * 86400,
            samesite="lax",
            httponly=True,
            secure=common.settings(request).secure_cookies,
        )
    return response


def _login_key(request: Request) -> bytes:
    return _app(request).master_key.derive("login-csrf")


def _login_page(
    request: Request, *, error: dict[str, Any] | None = None, status: int = 200, login_id: str = ""
) -> HTMLResponse:
    pre_session = new_login_csrf()
    csrf = login_csrf_token(_login_key(request), pre_session)
    response = render(
        request, "login.html", {"csrf": csrf, "error": error, "login_id": login_id}, status=status
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        pre_session,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=common.settings(request).secure_cookies,
    )
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    login_id, password = field(form, "login"), str(form.get("password") or "")
    pre_session = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not login_csrf_ok(_login_key(request), pre_session, field(form, "csrf")):
        return _login_page(
            request,
            status=403,
            login_id=login_id,
            error={
                "code": "permission_denied",
                "message": "the login form has expired or did not come from this site",
                "hint": "submit it again",
            },
        )
    try:
        result = common.login_with_limits(_app(request), login_id, password, common.client(request))
    except ProvisionerError as exc:
        return _login_page(request, status=exc.http_status, login_id=login_id, error=exc.to_dict())
    target = "/tenants" if len(result.tenants) > 1 else "/"
    response = RedirectResponse(target, status_code=303)
    lifetime = result.expires_at - _app(request).clock.now()
    response.set_cookie(
        SESSION_COOKIE,
        result.token,
        max_age=max(1, int(lifetime / timedelta(seconds=1))),
        expires=result.expires_at,
        path="/",
        httponly=True,
        samesite="lax",
        secure=common.settings(request).secure_cookies,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await posted(request)
    with _app(request).transaction() as ctx:
        auth.logout(ctx, _token(request) or "")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --------------------------------------------------------------------------- tenants, home


@router.get("/tenants")
def tenant_selection(request: Request) -> Response:
    with page_session(request) as (_ctx, _actor, header):
        return render(request, "tenants.html", header)


@router.post("/switch")
async def switch(request: Request) -> Response:
    """One click: select another of the user's tenants, no new login."""
    form = await posted(request)
    with _app(request).transaction() as ctx:
        auth.switch(ctx, _token(request) or "", field(form, "tenant"))
    return RedirectResponse(_safe_next(field(form, "next") or "/"), status_code=303)


@router.get("/")
def home(request: Request) -> Response:
    with page_session(request) as (ctx, actor, header):
        tenant = actors.get_tenant(ctx, actor.tenant_slug)
        # the inbox is the copy feature's: admins only
        pending = transfers.inbox(ctx, actor, status="pending") if actor.is_admin else []
        data = {"tenant": tenant, "pending": [present.transfer(t) for t in pending]}
        return render(request, "home.html", header | data)


# --------------------------------------------------------------------------- copy keys, send


@router.get("/keys")
def key_list(request: Request) -> Response:
    with page_session(request) as (ctx, actor, header):
        now = ctx.clock.now()
        keys = [present.key(k, now) for k in copykeys.list_keys(ctx, actor)]
        return render(request, "keys.html", header | {"keys": keys})


@router.post("/keys")
async def key_generate(request: Request) -> Response:
    await posted(request)
    with page_session(request) as (ctx, actor, header):
        made = copykeys.generate(ctx, actor, actors.get_tenant(ctx, actor.tenant_slug))
        now = ctx.clock.now()
        keys = [present.key(k, now) for k in copykeys.list_keys(ctx, actor)]
        new = {"text": made.text, "id": made.id, "expires_at": present.instant(made.expires_at)}
        return render(request, "keys.html", header | {"keys": keys, "new_key": new})


@router.post("/keys/{key_id}/revoke")
async def key_revoke(request: Request, key_id: common.RowId) -> Response:
    await posted(request)
    with page_session(request) as (ctx, actor, _header):
        copykeys.revoke(ctx, actor, str(key_id))
    return done("/keys", "saved")


SECTION_CHOICES = (
    "labels",
    "memo_fields",
    "checkboxes",
    "picklists",
    "classifications",
    "custom_databases",
    "workflows",
    "blueprints",
    "roles",
    "input_rules",
    "settings",
    "mode",
)


@router.get("/send")
def send_form(request: Request) -> Response:
    with page_session(request) as (_ctx, _actor, header):
        return render(
            request, "send.html", header | {"sections": SECTION_CHOICES, "key": "", "only": []}
        )


@router.post("/send")
async def send(request: Request) -> Response:
    form = await posted(request)
    only = [s for s in form.getlist("only") if isinstance(s, str)] or None
    limit_key = common.redeeming(request)
    with page_session(request) as (ctx, actor, header):
        pass  # the header, read in its own transaction: a refused send rolls back its own
    data: dict[str, Any] = {"sections": SECTION_CHOICES, "key": "", "only": []}
    try:
        with page_session(request) as (ctx, actor, _header):
            made = transfers.send(ctx, actor, field(form, "key"), only=only)
            target = ctx.session.get(Tenant, made.tenant_id)
            data |= {"sent": present.transfer(made), "target": target.slug if target else ""}
    except ProvisionerError as exc:
        common.count_failure(request, limit_key, exc)
        if exc.http_status == 401:
            raise
        return render(
            request,
            "send.html",
            header | data | {"error": exc.to_dict(), "key": field(form, "key"), "only": only or []},
            status=exc.http_status,
        )
    return render(request, "send.html", header | data)


# --------------------------------------------------------------------------- inbox


@router.get("/inbox")
def inbox(request: Request) -> Response:
    with page_session(request) as (ctx, actor, header):
        rows = [present.transfer(t) for t in transfers.inbox(ctx, actor)]
        return render(request, "inbox.html", header | {"transfers": rows})


def _plan_page(
    request: Request,
    transfer_id: int,
    *,
    mode: Mode | None = None,
    only: list[str] | None = None,
    error: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    with page_session(request) as (ctx, actor, header):
        row = common.find_transfer(ctx, actor, transfer_id)
        plan = (
            transfers.preview(ctx, row, mode=mode, only=only)
            if row.status == "pending"
            else row.plan
        )
        mode = plan.get("mode", mode or "replace")  # None: upgrade when a base exists
        impact = plan.get("impact") or {"items": [], "blocking": 0}
        items = [
            {
                **i,
                "remap_key": f"{i['picklist']}.{i['value']}"
                if i.get("kind") == "picklist_value_removed"
                else None,
                "choices": _active_values(ctx, row, i),
            }
            for i in impact.get("items", [])
        ]
        changes = [_describe_change(c) for c in plan.get("changes", [])]
        matches = [{**w, "kind": "workflow_matches"} for w in impact.get("workflows", [])]
        data = {
            "transfer": present.transfer(row),
            "plan": plan,
            "changes": changes,
            "impact": items,
            "workflow_matches": matches,
            "mode": mode,
            "only": only or [],
            "error": error,
            "upgrade": plan.get("upgrade"),
            "can_upgrade": mode == "upgrade" or "upgrade" in row.plan,
            "sections": plan.get("sections", []),
        }
        return render(request, "transfer.html", header | data, status=status)


def _active_values(ctx: Context, row: Any, item: dict[str, Any]) -> list[tuple[str, str]]:
    """The values a removed picklist value can be remapped to (from the incoming document)."""
    if item.get("kind") != "picklist_value_removed":
        return []
    incoming = transfers.incoming_config(ctx.session, row, shared=True)
    for pl in incoming.get("picklists", []) or []:
        if pl["code"] == item["picklist"]:
            return [(v["code"], v["label"]) for v in pl["values"] if v.get("active", True)]
    tenant = ctx.session.get(Tenant, row.tenant_id)
    assert tenant is not None
    head = configs.current(ctx, tenant)
    for pl in head.data.get("picklists", []):
        if pl["code"] == item["picklist"]:
            return [(v["code"], v["label"]) for v in pl["values"] if v.get("active", True)]
    return []


def _describe_change(change: dict[str, Any]) -> dict[str, Any]:
    def short(value: Any) -> str:
        if isinstance(value, dict):
            return str(value.get("label", "")) or "…"
        return "" if value is None else str(value)

    text = (
        "; ".join(change.get("details") or [])
        if change.get("details")
        else (
            f"{short(change.get('before'))} → {short(change.get('after'))}"
            if change["op"] == "changed"
            else short(change.get("after") or change.get("before"))
        )
    )
    return {**change, "text": text}


@router.get("/inbox/{transfer_id}")
def transfer_page(
    request: Request, transfer_id: common.RowId, mode: str | None = None, only: str | None = None
) -> Response:
    return _plan_page(
        request,
        transfer_id,
        mode=_mode(mode),
        only=[s for s in only.split(",") if s] if only else None,
    )


Mode = Literal["replace", "merge", "upgrade"]


def _mode(value: str | None) -> Mode | None:
    """A mode of the approval form (None: upgrade when the tenant has a base, else replace)."""
    if not value:
        return None
    if value not in ("replace", "merge", "upgrade"):
        raise ValidationFailed(f"unknown mode {value!r}", hint="replace, merge or upgrade")
    return cast(Mode, value)


def _approval(form: FormData) -> dict[str, Any]:
    """The approval form: mode, sections, remaps (``remap:PICKLIST.VALUE``), force, and an
    upgrade's choices per conflict (``resolve:ADDRESS`` = ours | theirs)."""
    remaps = {}
    chosen: dict[str, list[str]] = {"ours": [], "theirs": []}  # an upgrade's conflicts
    for name, value in form.multi_items():
        if name.startswith("remap:") and isinstance(value, str) and value.strip():
            remaps[name[6:]] = value.strip()
        elif name.startswith("resolve:") and value in chosen:
            chosen[str(value)].append(name[8:])
    return {
        "mode": _mode(field(form, "mode")),
        "remaps": remaps,
        "only": [s for s in form.getlist("only") if isinstance(s, str)] or None,
        "force": form.get("force") == "on",
        "keep": chosen["ours"],
        "take": chosen["theirs"],
    }


def _confirm_page(
    request: Request, transfer_id: int, action: str, choice: dict[str, Any]
) -> Response:
    """What approving (or rejecting) will do, with the button that does it."""
    with page_session(request) as (ctx, actor, header):
        actors.require_admin(actor, f"{action} incoming configurations")
        row = common.find_transfer(ctx, actor, transfer_id)
        plan = (
            transfers.preview(ctx, row, mode=choice.get("mode"), only=choice.get("only"))
            if action == "approve"
            else row.plan
        )
        summary = plan.get("summary", {})
        totals = {
            op: sum(int(v.get(op, 0)) for v in summary.values())
            for op in ("added", "changed", "removed")
        }
        impact = (plan.get("impact") or {}).get("items", [])
        remapped = sum(
            int(i.get("count", 0))
            for i in impact
            if f"{i.get('picklist')}.{i.get('value')}" in choice.get("remaps", {})
        )
        data = {
            "transfer": present.transfer(row),
            "action": action,
            "choice": choice,
            "summary": summary,
            "totals": totals,
            "impact": impact,
            "touched": sum(int(i.get("count", 0)) for i in impact),
            "remapped": remapped,
        }
        return render(request, "confirm.html", header | data)


@router.post("/inbox/{transfer_id}/approve")
async def approve(request: Request, transfer_id: common.RowId) -> Response:
    """Asks for confirmation (the plan's counts, the records touched), then applies."""
    form = await posted(request)
    choice = _approval(form)
    if form.get("confirmed") != "yes":
        return _confirm_page(request, transfer_id, "approve", choice)
    try:
        with page_session(request) as (ctx, actor, _header):
            decision = transfers.approve(ctx, actor, transfer_id, **choice)
    except ProvisionerError as exc:
        if exc.http_status in (401, 403) and not isinstance(exc, ValidationFailed):
            raise
        return _plan_page(
            request,
            transfer_id,
            mode=choice["mode"],
            only=choice["only"],
            error=exc.to_dict(),
            status=exc.http_status,
        )
    if decision.outcome == "replanned":
        return _plan_page(
            request,
            transfer_id,
            error={"code": "replanned", "message": decision.message},
            status=409,
        )
    return done(f"/inbox/{transfer_id}", "applied")


@router.post("/inbox/{transfer_id}/reject")
async def reject(request: Request, transfer_id: common.RowId) -> Response:
    """Asks for confirmation, then rejects (the configuration is unchanged)."""
    form = await posted(request)
    reason = field(form, "reason") or None
    if form.get("confirmed") != "yes":
        return _confirm_page(request, transfer_id, "reject", {"reason": reason})
    with page_session(request) as (ctx, actor, _header):
        transfers.reject(ctx, actor, transfer_id, reason=reason)
    return done(f"/inbox/{transfer_id}", "rejected")


@router.post("/inbox/{transfer_id}/rollback")
async def transfer_rollback(request: Request, transfer_id: common.RowId) -> Response:
    """Undo an applied transfer (offered on its result page)."""
    await posted(request)
    with page_session(request) as (ctx, actor, _header):
        common.find_transfer(ctx, actor, transfer_id)
        transfers.rollback(ctx, actor, transfer_id)
    return done(f"/inbox/{transfer_id}", "transfer_rolled_back")


# --------------------------------------------------------------------------- configuration


EDITABLE = ("labels", "checkboxes", "memo_fields", "picklists", "classifications")


@router.get("/config")
def config_editor(request: Request) -> Response:
    with page_session(request) as (ctx, actor, header):
        tenant = actors.get_tenant(ctx, actor.tenant_slug)
        head = configs.current(ctx, tenant)
        label_groups = [
            (obj, [(f"{obj}.{f}", head.data["labels"].get(f"{obj}.{f}", "")) for f in fields])
            for obj, fields in STANDARD_FIELDS.items()
        ]
        return render(
            request,
            "config.html",
            header
            | {
                "doc": head.data,
                "version": head.version,
                "label_groups": label_groups,
                "blank": range(3),
            },
        )


def _rows(form: FormData, prefix: str, names: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows posted as ``PREFIX-N-NAME`` fields, in N order; rows without a code are dropped."""
    found: dict[int, dict[str, str]] = {}
    for key, value in form.multi_items():
        if not key.startswith(prefix + "-") or not isinstance(value, str):
            continue
        number, _, name = key[len(prefix) + 1 :].partition("-")
        row = parse_whole_number(number)
        if row is not None and name in names:
            found.setdefault(row, {})[name] = value.strip()
    return [found[n] for n in sorted(found) if found[n].get("code") or found[n].get("index")]


def section_from_form(section: str, form: FormData) -> Any:
    """The posted editor form as the configuration section it stands for."""
    if section == "labels":
        return {k: field(form, f"label:{k}") for k in LABEL_KEYS if field(form, f"label:{k}")}
    if section == "checkboxes":
        return [
            {
                "index": i,
                "label": field(form, f"cb-{i}-label"),
                "enabled": form.get(f"cb-{i}-enabled") == "on",
            }
            for i in range(1, CHECKBOX_COUNT + 1)
        ]
    if section == "memo_fields":
        out = []
        for i in range(1, MEMO_COUNT + 1):
            memo: dict[str, Any] = {
                "index": i,
                "label": field(form, f"memo-{i}-label"),
                "type": field(form, f"memo-{i}-type") or "text",
            }
            if memo["type"] == "picklist":
                memo["picklist"] = field(form, f"memo-{i}-picklist") or None
            out.append(memo)
        return out
    if section == "picklists":
        lists = []
        for pl in _rows(form, "pl", ("code", "label", "n")):
            values = [
                {
                    "code": v["code"],
                    "label": v.get("label") or v["code"],
                    "active": v.get("active") == "on",
                }
                for v in _rows(form, f"pv{pl.get('n', '')}", ("code", "label", "active"))
            ]
            lists.append(
                {"code": pl["code"], "label": pl.get("label") or pl["code"], "values": values}
            )
        return lists
    if section == "classifications":
        return {
            tree: [
                {
                    "code": r["code"],
                    "label": r.get("label") or r["code"],
                    "parent": r.get("parent") or None,
                }
                for r in _rows(form, tree, ("code", "label", "parent"))
            ]
            for tree in ("customer", "product")
        }
    raise ValidationFailed(
        f"the console does not edit {section!r}", hint="use PUT /api/tenants/{tenant}/config"
    )


@router.post("/config/rollback")
async def config_rollback(request: Request) -> Response:
    form = await posted(request)
    to = field(form, "to")
    version = parse_whole_number(to)
    if version is None or not 1 <= version < 2**31:
        raise ValidationFailed(f"{to!r} is not a version number")
    with page_session(request) as (ctx, actor, _header):
        configs.rollback(ctx, actor, actors.get_tenant(ctx, actor.tenant_slug), version)
    return done("/config/history", "rolled_back")


@router.post("/config/{section}")
async def config_save(request: Request, section: str) -> Response:
    form = await posted(request)
    if section not in EDITABLE:
        raise ValidationFailed(f"the console does not edit {section!r}")
    data = section_from_form(section, form)
    with page_session(request) as (ctx, actor, _header):
        made = configs.set_sections(
            ctx, actor, actors.get_tenant(ctx, actor.tenant_slug), {section: data}
        )
    return done("/config", "saved" if made else "unchanged")


@router.get("/config/history")
def config_history(
    request: Request, diff_from: common.Version = None, diff_to: common.Version = None
) -> Response:
    with page_session(request) as (ctx, actor, header):
        tenant = actors.get_tenant(ctx, actor.tenant_slug)
        versions = [
            present.version(v, tenant.config_version)
            for v in reversed(configs.history(ctx, tenant))
        ]
        changes = None
        if diff_from is not None and diff_to is not None:
            changes = [c.describe() for c in configs.diff_versions(ctx, tenant, diff_from, diff_to)]
        return render(
            request,
            "history.html",
            header
            | {
                "versions": versions,
                "changes": changes,
                "diff_from": diff_from,
                "diff_to": diff_to,
                "current": tenant.config_version,
            },
        )


# --------------------------------------------------------------------------- customers, pop


def _labels(ctx: Context, actor: Actor) -> dict[str, Any]:
    doc = scope.config(ctx, actor.tenant_id)
    return {
        "labels": doc.labels,
        "memos": {m.index: m.label for m in doc.memo_fields},
        "boxes": {c.index: c.label for c in doc.checkboxes},
        "picks": {pl.code: {v.code: v.label for v in pl.values} for pl in doc.picklists},
        "memo_picklists": {m.index: m.picklist for m in doc.memo_fields if m.type == "picklist"},
        "classes": {n.code: n.label for n in doc.classifications.customer},
    }


def customer_page(
    request: Request, contact_id: int, *, failed: dict[str, Any] | None = None, status: int = 200
) -> Response:
    """The customer, their history and the forms that add to it (``failed``: an activity
    or purchase form the service refused, shown again with its problems)."""
    with page_session(request) as (ctx, actor, header):
        contact = records.show(ctx, actor, "contact", contact_id)
        acts = records.list_children(ctx, actor, "activity", contact_id, limit=20)
        buys = records.list_children(ctx, actor, "purchase", contact_id, limit=20)
        stages = workflows.blueprint_status(ctx, actor, "contact", contact_id)
        doc = scope.config(ctx, actor.tenant_id)
        return render(
            request,
            "customer.html",
            header
            | _labels(ctx, actor)
            | {
                "c": contact,
                "activities": acts,
                "purchases": buys,
                "stages": stages,
                "allowed": scope.permissions(ctx, actor, doc),
                "failed": failed or {},
                "pick_options": {
                    pl.code: [(v.code, v.label) for v in pl.values if v.active]
                    for pl in doc.picklists
                },
                "product_options": [(n.code, n.label) for n in doc.classifications.product],
                "today": local_today(ctx.clock).isoformat(),
                "field_labels": {k: field_labels(doc, k) for k in ("activity", "purchase")},
            },
            status=status,
        )


def field_labels(doc: ConfigDocument, kind: str) -> dict[str, str]:
    """A record form's fields by the tenant's labels (for the list of problems)."""
    out = {
        key.partition(".")[2]: label
        for key, label in doc.labels.items()
        if key.startswith(f"{kind}.")
    }
    if kind == "contact":
        out |= {f"memo_{m.index}": m.label for m in doc.memo_fields}
        out["company_id"] = doc.labels.get("company.name", "company")
    return out


@router.get("/customers/{contact_id}")
def customer(request: Request, contact_id: common.RowId) -> Response:
    return customer_page(request, contact_id)


@router.post("/customers/{contact_id}/transition")
async def customer_transition(request: Request, contact_id: common.RowId) -> Response:
    """A blueprint move of the customer (the buttons of the customer page)."""
    form = await posted(request)
    with page_session(request) as (ctx, actor, _header):
        workflows.transition(
            ctx,
            actor,
            "contact",
            contact_id,
            field(form, "to"),
            blueprint=field(form, "blueprint") or None,
        )
    return done(f"/customers/{contact_id}", "moved")


# --------------------------------------------------------------------------- automation


@router.get("/workflows")
def workflow_list(request: Request) -> Response:
    with page_session(request) as (ctx, actor, header):
        return render(
            request,
            "workflows.html",
            header
            | {
                "workflows": workflows.list_workflows(ctx, actor),
                "log": workflows.execution_log(ctx, actor, limit=20),
            },
        )


@router.get("/workflows/{code}/dry-run")
def workflow_dry_run(request: Request, code: str) -> Response:
    """What a rule would do to the existing records (nothing is written)."""
    with page_session(request) as (ctx, actor, header):
        report = workflows.dry_run(ctx, actor, code[:63]).to_dict()
        return render(request, "dry_run.html", header | {"report": report})


@router.post("/workflows/{code}/state")
async def workflow_state(request: Request, code: str) -> Response:
    form = await posted(request)
    active = field(form, "state") == "active"
    with page_session(request) as (ctx, actor, _header):
        workflows.set_active(ctx, actor, code[:63], active)
    return done("/workflows", "workflow_activated" if active else "workflow_paused")


@router.get("/notifications")
def notification_list(request: Request) -> Response:
    with page_session(request) as (ctx, actor, header):
        return render(
            request, "notifications.html", header | {"items": workflows.notifications(ctx, actor)}
        )


@router.post("/notifications/read")
async def notifications_read(request: Request) -> Response:
    await posted(request)
    with page_session(request) as (ctx, actor, _header):
        workflows.mark_read(ctx, actor)
    return done("/notifications", "notifications_read")


@router.get("/pop")
def screen_pop(request: Request, phone: str = "", call_id: str = "") -> Response:
    with page_session(request) as (ctx, actor, header):
        card = None
        error = None
        if phone.strip():
            try:  # the pop-up is the metered call (once per call id)
                card = metering.screen_pop(
                    ctx, actor, phone[:40], call_ref=call_id.strip()[:100] or None
                )
            except ProvisionerError as exc:
                if exc.http_status in (401, 403):
                    raise
                error = exc.to_dict()
        return render(
            request,
            "pop.html",
            header | _labels(ctx, actor) | {"phone": phone, "card": card, "error": error},
        )
