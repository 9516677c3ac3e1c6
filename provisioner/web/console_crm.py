"""The console's CRM pages: the customer list with the full search, paging and sorting;
create and edit forms built from the tenant's configuration; adding activities and
purchases; CSV import (with a dry run) and export; bulk update and delete of a search
result (after a confirmation page); the tenant's user admin page.

Like :mod:`provisioner.web.console` (whose plumbing it uses: ``page_session``,
``render``, ``posted``), every route turns the page's form or query into the
service's input and calls the service (:mod:`provisioner.services.crm.search`,
``records``, ``bulk``, ``csvio``, :mod:`provisioner.services.users`); permissions,
validation and effects are the services'. The router is included before the
console's so that ``/customers/new`` is not read as a customer id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.datastructures import FormData, UploadFile

from provisioner.config.document import BUILTIN_ROLES, CHECKBOX_COUNT, ConfigDocument
from provisioner.db.crm_models import CrmCompany
from provisioner.errors import ProvisionerError, ValidationFailed
from provisioner.numbers import parse_whole_number
from provisioner.services import users
from provisioner.services.actors import Actor
from provisioner.services.context import Context
from provisioner.services.crm import bulk, csvio, records, scope, search
from provisioner.web import common
from provisioner.web.console import (
    _labels,
    customer_page,
    done,
    field,
    field_labels,
    page_session,
    posted,
    render,
)

router = APIRouter(include_in_schema=False)

#: the per-field text conditions the search form offers (``f_NAME``)
SEARCH_FIELDS = (
    "name",
    "kana",
    "company",
    "phone",
    "email",
    "address",
    "postal_code",
    "title",
    "department",
)
#: the search's conditions besides text, as query parameters of the list
PLAIN_PARAMS = (
    "classification",
    "updated_from",
    "updated_to",
    "created_from",
    "created_to",
    "birthday_from",
    "birthday_to",
    "activity_kind",
    "activity_text",
    "activity_from",
    "activity_to",
    "purchase_product",
    "purchase_from",
    "purchase_to",
    "purchase_payment_method",
)
PAGE_SIZES = (20, 50, 100)
CONTACT_TEXT = (
    "name",
    "kana",
    "title",
    "email",
    "phone",
    "mobile",
    "fax",
    "postal_code",
    "address",
)
ACTIVITY_TEXT = (
    "content",
    "detail",
    "response",
    "store",
    "staff",
    "memo",
    *(f"content_{i}" for i in range(1, 11)),
)
PURCHASE_TEXT = ("product_code", "product_name", "quantity", "unit_price", "amount", "memo")


# --------------------------------------------------------------------------- search


def _tri(value: str | None) -> bool | None:
    return True if value == "yes" else False if value == "no" else None


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    number = parse_whole_number(text, width=True)
    if number is None or number > 200:
        raise ValidationFailed(f"{name}: {text!r} is not an age (a whole number 0..200)")
    return number


def search_params(params: Mapping[str, str]) -> dict[str, str]:
    """The search's own parameters of a query string (what paging, sorting, export and the
    bulk operations carry along), without empty ones."""
    names = (
        "q",
        "match",
        "age_from",
        "age_to",
        "purchase_shipped",
        "purchase_paid",
        "sort",
        "per",
        *PLAIN_PARAMS,
        *(f"f_{f}" for f in SEARCH_FIELDS),
        *(f"cb{i}" for i in range(1, CHECKBOX_COUNT + 1)),
    )
    return {n: str(params[n])[:500] for n in names if params.get(n)}


def search_query(params: Mapping[str, str], *, page: int = 1) -> search.Query:
    """The list page's query string as the search service's :class:`search.Query`."""
    sort = params.get("sort") or "id"
    if sort.lstrip("-") not in search.SORTS:
        raise ValidationFailed(f"cannot sort by {sort!r}", hint="sorts: " + ", ".join(search.SORTS))
    per = parse_whole_number(params.get("per") or "50")
    if per not in PAGE_SIZES:
        per = 50
    boxes = {
        i: params.get(f"cb{i}") == "on"
        for i in range(1, CHECKBOX_COUNT + 1)
        if params.get(f"cb{i}") in ("on", "off")
    }
    plain = {n: params[n].strip()[:500] for n in PLAIN_PARAMS if (params.get(n) or "").strip()}
    return search.Query(
        q=(params.get("q") or "")[:500],
        match="any" if params.get("match") == "any" else "all",
        fields={
            f: params[f"f_{f}"][:200] for f in SEARCH_FIELDS if (params.get(f"f_{f}") or "").strip()
        },
        checkboxes=boxes,
        age_from=_int_param(params, "age_from"),
        age_to=_int_param(params, "age_to"),
        purchase_shipped=_tri(params.get("purchase_shipped")),
        purchase_paid=_tri(params.get("purchase_paid")),
        sort=sort,
        limit=per,
        offset=(page - 1) * per,
        **plain,
    )


def _options(ctx: Context, actor: Actor) -> dict[str, Any]:
    """What the search and record forms offer: picklists, classifications, checkboxes,
    and the actor's permissions (a control the service would refuse is not offered)."""
    doc = scope.config(ctx, actor.tenant_id)
    return {
        "doc": doc,
        "allowed": scope.permissions(ctx, actor, doc),
        "pick_values": {pl.code: [v for v in pl.values if v.active] for pl in doc.picklists},
        "pick_options": {
            pl.code: [(v.code, v.label) for v in pl.values if v.active] for pl in doc.picklists
        },
        "class_nodes": doc.classifications.customer,
        "product_nodes": doc.classifications.product,
    }


def _opened(carried: Mapping[str, str]) -> set[str]:
    """The search form's groups that hold a condition (shown open)."""
    groups = {
        "fields": ("f_",),
        "boxes": ("cb",),
        "activity": ("activity_",),
        "purchase": ("purchase_",),
        "dates": ("classification", "updated_", "created_", "birthday_", "age_"),
    }
    return {g for g, prefixes in groups.items() if any(k.startswith(prefixes) for k in carried)}


@router.get("/customers")
def customer_list(request: Request, page: int = 1) -> Response:
    page = max(1, min(page, 100_000))
    params = dict(request.query_params)
    carried = search_params(params)
    with page_session(request) as (ctx, actor, header):
        data = (
            header
            | _labels(ctx, actor)
            | _options(ctx, actor)
            | {
                "p": params,
                "carried": carried,
                "sorts": search.SORTS,
                "sizes": PAGE_SIZES,
                "carried_q": urlencode(carried),
                "opened": _opened(carried),
                "unsorted": urlencode({k: v for k, v in carried.items() if k != "sort"}),
            }
        )
        try:
            query = search_query(params, page=page)
            result = search.search(ctx, actor, query)
        except ValidationFailed as exc:
            return render(
                request,
                "customers.html",
                data | {"error": exc.to_dict(), "result": None},
                status=422,
            )
        pages = max(1, -(-result.total // query.limit)) if query.limit else 1
        data |= {
            "result": result,
            "query": query,
            "page": page,
            "pages": pages,
            "first": query.offset + 1,
            "last": query.offset + len(result.items),
        }
        return render(request, "customers.html", data)


# --------------------------------------------------------------------------- create, edit


def _problems(exc: ValidationFailed) -> dict[str, str]:
    """A validation error's problems by field (``"email: ... is not ..."`` -> email)."""
    out: dict[str, str] = {}
    for problem in exc.problems or []:
        key, sep, reason = problem.partition(": ")
        if sep:
            out.setdefault(key, reason)
    return out


def contact_from_form(form: FormData, doc: ConfigDocument, *, new: bool) -> dict[str, Any]:
    """The posted contact form as the record service's input (empty fields: left out of a
    new record, cleared on an edit)."""
    data: dict[str, Any] = {}
    for key in (*CONTACT_TEXT, "note", "birthday", "sex", *records.MEMOS):
        value = form.get(key)
        if isinstance(value, str) and (value.strip() or not new):
            data[key] = value.strip() if key != "note" else value
    if doc.mode == "corporate":
        company = field(form, "company_id")
        if company or not new:
            data["company_id"] = company or None
    enabled = [c.index for c in doc.checkboxes if c.enabled]
    ticked = {parse_whole_number(v) for v in form.getlist("checkboxes") if isinstance(v, str)}
    if new:
        if ticked & set(enabled):
            data["checkboxes"] = sorted(i for i in enabled if i in ticked)
    else:
        data["checkboxes"] = {str(i): i in ticked for i in enabled}
    classes = [v for v in form.getlist("classifications") if isinstance(v, str) and v]
    if classes or not new:
        data["classifications"] = classes
    return data


def _companies(
    ctx: Context, actor: Actor, keep: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The companies the form offers (the first 1000 by name, and the record's own, so
    that saving the form never drops it)."""
    rows = ctx.session.execute(
        select(CrmCompany.id, CrmCompany.name)
        .where(CrmCompany.tenant_id == actor.tenant_id)
        .order_by(CrmCompany.name)
        .limit(1000)
    )
    out = [{"id": i, "name": n} for i, n in rows]
    own = (keep or {}).get("company_id")
    if own and all(c["id"] != own for c in out):
        name = ctx.session.scalar(
            select(CrmCompany.name).where(
                CrmCompany.tenant_id == actor.tenant_id, CrmCompany.id == own
            )
        )
        out.insert(0, {"id": own, "name": name or f"#{own}"})
    return out


def _form_page(
    request: Request,
    values: Mapping[str, Any],
    *,
    contact_id: int | None,
    error: dict[str, Any] | None = None,
    problems: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    with page_session(request) as (ctx, actor, header):
        options = _options(ctx, actor)
        doc = options["doc"]
        data = (
            header
            | _labels(ctx, actor)
            | options
            | {
                "v": values,
                "contact_id": contact_id,
                "error": error,
                "problems": problems or {},
                "rules": doc.input_rules,
                "companies": _companies(ctx, actor, keep=values) if doc.mode == "corporate" else [],
                "enabled_boxes": [c for c in doc.checkboxes if c.enabled],
                "field_labels": field_labels(doc, "contact"),
            }
        )
        return render(request, "customer_form.html", data, status=status)


@router.get("/customers/new")
def customer_new(request: Request) -> Response:
    return _form_page(request, {"checkboxes": [], "classifications": []}, contact_id=None)


def _posted_values(form: FormData) -> dict[str, Any]:
    """The form as posted, to show it again after a refusal."""
    values: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    values["checkboxes"] = [
        parse_whole_number(v) for v in form.getlist("checkboxes") if isinstance(v, str)
    ]
    values["classifications"] = [v for v in form.getlist("classifications") if isinstance(v, str)]
    values["company_id"] = parse_whole_number(field(form, "company_id"))
    return values


@router.post("/customers/new")
async def customer_create(request: Request) -> Response:
    form = await posted(request)
    try:
        with page_session(request) as (ctx, actor, _header):
            doc = scope.config(ctx, actor.tenant_id)
            saved = records.create(
                ctx,
                actor,
                "contact",
                contact_from_form(form, doc, new=True),
                purpose=field(form, "purpose") or None,
            )
    except ValidationFailed as exc:
        return _form_page(
            request,
            _posted_values(form),
            contact_id=None,
            error=exc.to_dict(),
            problems=_problems(exc),
            status=422,
        )
    notice = "created_duplicates" if saved.duplicates else "created"
    return done(f"/customers/{saved.record['id']}", notice)


@router.get("/customers/{contact_id}/edit")
def customer_edit(request: Request, contact_id: common.RowId) -> Response:
    with page_session(request) as (ctx, actor, _header):
        values = records.show(ctx, actor, "contact", contact_id)
    return _form_page(request, values, contact_id=contact_id)


@router.post("/customers/{contact_id}/edit")
async def customer_update(request: Request, contact_id: common.RowId) -> Response:
    form = await posted(request)
    try:
        with page_session(request) as (ctx, actor, _header):
            doc = scope.config(ctx, actor.tenant_id)
            records.update(
                ctx,
                actor,
                "contact",
                contact_id,
                contact_from_form(form, doc, new=False),
                purpose=field(form, "purpose") or None,
            )
    except ValidationFailed as exc:
        return _form_page(
            request,
            _posted_values(form),
            contact_id=contact_id,
            error=exc.to_dict(),
            problems=_problems(exc),
            status=422,
        )
    return done(f"/customers/{contact_id}", "saved")


# --------------------------------------------------------------------------- history


def child_from_form(form: FormData, kind: str, contact_id: int) -> dict[str, Any]:
    """A posted activity or purchase form as the record service's input."""
    data: dict[str, Any] = {"contact_id": contact_id, "date": field(form, "date")}
    if kind == "activity":
        for key in ("kind", *ACTIVITY_TEXT):
            if field(form, key):
                data[key] = field(form, key)
    else:
        for key in ("product_class", "payment_method", "media", *PURCHASE_TEXT):
            if field(form, key):
                data[key] = field(form, key)
        data["shipped"] = form.get("shipped") == "on"
        data["paid"] = form.get("paid") == "on"
    return data


async def _add_child(request: Request, contact_id: int, kind: str) -> Response:
    form = await posted(request)
    try:
        with page_session(request) as (ctx, actor, _header):
            records.create(ctx, actor, kind, child_from_form(form, kind, contact_id))
    except ValidationFailed as exc:
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        return customer_page(
            request,
            contact_id,
            failed={"kind": kind, "error": exc.to_dict(), "problems": _problems(exc), "v": values},
            status=422,
        )
    return done(f"/customers/{contact_id}", f"{kind}_added")


@router.post("/customers/{contact_id}/activities")
async def activity_add(request: Request, contact_id: common.RowId) -> Response:
    return await _add_child(request, contact_id, "activity")


@router.post("/customers/{contact_id}/purchases")
async def purchase_add(request: Request, contact_id: common.RowId) -> Response:
    return await _add_child(request, contact_id, "purchase")


# --------------------------------------------------------------------------- import, export


@router.get("/customers/import")
def import_form(request: Request) -> Response:
    with page_session(request) as (ctx, actor, header):
        return render(request, "import.html", header | _options(ctx, actor) | {"dry_run": True})


_PROBLEM = re.compile(r"row (?P<row>\d+), (?P<column>.*?): (?P<reason>.*)", re.S)


def problem_rows(problems: list[str]) -> list[dict[str, str]]:
    """An import's problems (``row 3, 電話: too many digits``) as table rows."""
    out = []
    for text in problems:
        found = _PROBLEM.fullmatch(text)
        out.append(found.groupdict() if found else {"row": "", "column": "", "reason": text})
    return out


@router.post("/customers/import")
async def import_upload(request: Request) -> Response:
    form = await posted(request)
    try:
        upload = form.get("file")
        raw = await upload.read(common.MAX_CSV + 1) if isinstance(upload, UploadFile) else b""
        name = upload.filename or "" if isinstance(upload, UploadFile) else ""
    finally:
        await form.close()
    return _import_page(request, raw, name, dry_run=form.get("dry_run") == "on")


def _import_page(request: Request, raw: bytes, name: str, *, dry_run: bool) -> Response:
    """Import (or check) the file; the page with the report, or the problems by row."""
    report: csvio.ImportReport | None = None
    error: dict[str, Any] | None = None
    try:
        if not name:
            raise ValidationFailed("choose a CSV file to import")
        if len(raw) > common.MAX_CSV:
            raise ValidationFailed("the CSV file is larger than 256 MiB", hint="split it")
        with page_session(request) as (ctx, actor, _header):
            report = csvio.import_customers(ctx, actor, raw, dry_run=dry_run, source=name)
    except ValidationFailed as exc:
        error = exc.to_dict()
    with page_session(request) as (ctx, actor, header):
        return render(
            request,
            "import.html",
            header
            | _options(ctx, actor)
            | {
                "dry_run": dry_run,
                "report": report,
                "error": error and {**error, "problems": []},  # the problems: a table
                "rows": problem_rows(list((error or {}).get("problems") or [])),
                "filename": name,
            },
            status=422 if error else 200,
        )


@router.get("/customers/export")
def export_csv(request: Request) -> Response:
    params = dict(request.query_params)
    kind = params.get("kind") or "customers"
    encoding = "cp932" if params.get("encoding") == "cp932" else "utf-8-sig"
    with page_session(request) as (ctx, actor, _header):
        query = search_query(params)
        data = csvio.export(ctx, actor, kind, query, encoding=encoding)
    charset = "shift_jis" if encoding == "cp932" else "utf-8"
    return Response(
        data,
        media_type=f"text/csv; charset={charset}",
        headers={
            "Content-Disposition": f'attachment; filename="{actor.tenant_slug}-{kind}.csv"',
            "Content-Length": str(len(data)),
        },
    )


# --------------------------------------------------------------------------- bulk


def bulk_changes(form: FormData) -> dict[str, Any]:
    """The bulk-update form: ``set_cbN`` = on | off (else unchanged), a company id."""
    boxes = {
        i: form.get(f"set_cb{i}") == "on"
        for i in range(1, CHECKBOX_COUNT + 1)
        if form.get(f"set_cb{i}") in ("on", "off")
    }
    company = field(form, "set_company")
    company_id = parse_whole_number(company) if company else None
    if company and company_id is None:
        raise ValidationFailed(f"company: {company!r} is not a company")
    return {"checkboxes": boxes, "company_id": company_id}


def _search_of(form: FormData) -> dict[str, str]:
    return search_params({k: v for k, v in form.items() if isinstance(v, str)})


@router.get("/customers/bulk")
def bulk_form(request: Request, action: str = "update") -> Response:
    """Choose the changes for every customer the search finds (or confirm a delete)."""
    params = dict(request.query_params)
    carried = search_params(params)
    action = "delete" if action == "delete" else "update"
    with page_session(request) as (ctx, actor, header):
        scope.require(ctx, actor, f"bulk_{action}", f"bulk-{action} customers")
        total = search.search(ctx, actor, search_query(params)).total
        return render(
            request,
            "bulk.html",
            header
            | _labels(ctx, actor)
            | _options(ctx, actor)
            | {
                "action": action,
                "carried": carried,
                "total": total,
                "confirming": False,
                "companies": _companies(ctx, actor),
                "changes": None,
            },
        )


@router.post("/customers/bulk/{action}")
async def bulk_run(request: Request, action: str) -> Response:
    """Without ``confirmed``: the confirmation page (how many, what); with it: done."""
    form = await posted(request)
    if action not in ("update", "delete"):
        raise ValidationFailed(f"unknown bulk action {action!r}", hint="update or delete")
    carried = _search_of(form)
    query = search_query(carried)
    changes = bulk_changes(form) if action == "update" else None
    purpose = field(form, "purpose") or None
    if form.get("confirmed") != "yes":
        with page_session(request) as (ctx, actor, header):
            if changes is not None and not changes["checkboxes"] and not changes["company_id"]:
                raise ValidationFailed("nothing to update", hint="give checkboxes and/or a company")
            total = search.search(ctx, actor, query).total
            return render(
                request,
                "bulk.html",
                header
                | _labels(ctx, actor)
                | _options(ctx, actor)
                | {
                    "action": action,
                    "carried": carried,
                    "total": total,
                    "confirming": True,
                    "changes": changes,
                    "purpose": purpose,
                    "companies": _companies(ctx, actor),
                },
            )
    with page_session(request) as (ctx, actor, _header):
        if changes is not None:
            count = bulk.bulk_update(
                ctx,
                actor,
                query,
                checkboxes=changes["checkboxes"],
                company_id=changes["company_id"],
                purpose=purpose,
            )
        else:
            count = bulk.bulk_delete(ctx, actor, query, purpose=purpose)
    del count  # the list shows what the search finds now
    return done(f"/customers?{urlencode(carried)}", f"bulk_{action}d")


# --------------------------------------------------------------------------- users


def _user_page(
    request: Request,
    *,
    password: dict[str, str] | None = None,
    error: dict[str, Any] | None = None,
    confirm: str | None = None,
    status: int = 200,
) -> Response:
    with page_session(request) as (ctx, actor, header):
        data = header | {
            "users": users.list_users(ctx, actor),
            "departments": users.departments(ctx, actor),
            "roles": _roles(ctx, actor),
            "password": password,
            "error": error,
            "confirm_remove": confirm,
        }
        return render(request, "users.html", data, status=status)


def _roles(ctx: Context, actor: Actor) -> list[str]:
    doc = scope.config(ctx, actor.tenant_id)
    return [*BUILTIN_ROLES, *(r.code for r in doc.roles)]


@router.get("/users")
def user_admin(request: Request) -> Response:
    return _user_page(request)


def _user_change(ctx: Context, actor: Actor, action: str, form: FormData) -> dict[str, Any]:
    """One change of the user admin page; what the page shows after it (if anything)."""
    login = field(form, "login")
    if action == "role":
        users.set_role(ctx, actor, login, field(form, "role"))
    elif action == "department":
        users.set_department(ctx, actor, login, field(form, "department") or None)
    elif action == "disable":
        users.disable(ctx, actor, login)
    elif action == "enable":
        users.enable(ctx, actor, login)
    elif action == "remove" and form.get("confirmed") != "yes":
        users.show(ctx, actor, login)  # one of the tenant's users: ask first
        return {"confirm": login}
    elif action == "remove":
        users.remove(ctx, actor, login)
    elif action == "password":
        return {"password": {"login": login, "password": users.reset_password(ctx, actor, login)}}
    elif action == "add_department":
        users.add_department(ctx, actor, field(form, "code"), field(form, "name"))
    else:
        raise ValidationFailed(
            f"unknown user action {action!r}",
            hint="role, department, disable, enable, remove, password, add_department",
        )
    return {}


@router.post("/users/{action}")
async def user_action(request: Request, action: str) -> Response:
    """role, department, disable, enable, remove (after a confirmation), password (the new
    one shown once), add_department."""
    form = await posted(request)
    try:
        with page_session(request) as (ctx, actor, _header):
            shown = _user_change(ctx, actor, action, form)
    except ProvisionerError as exc:
        if exc.http_status == 401:
            raise
        # shown on the page (which itself refuses a user who is not an admin)
        return _user_page(request, error=exc.to_dict(), status=exc.http_status)
    if shown:
        return _user_page(request, password=shown.get("password"), confirm=shown.get("confirm"))
    notice = {"remove": "user_removed", "add_department": "department_added"}
    return done("/users", notice.get(action, "user_saved"))
