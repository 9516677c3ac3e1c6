"""The JSON API: the same service calls as the CLI, over HTTP (``/api/...``).

Every route opens one transaction, finds the acting user from the bearer
token (``security.acting``) and calls the service layer, which checks the
permissions. Tenant-scoped routes name the tenant in the path
(``/api/tenants/{tenant}/...``: its slug, its number in the user's list, or
``current`` for the session's selected tenant); a tenant the user is not a
member of is refused with 403, and another tenant's transfer, key or record
is "not found" (404).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from provisioner.db.models import Tenant
from provisioner.db.provisioning_models import TenantGroup
from provisioner.errors import (
    BundleRejected,
    NotFound,
    ProvisionerError,
    ValidationFailed,
)
from provisioner.services import actors, configs, copykeys, transfers, users
from provisioner.services.context import Context, Provisioner
from provisioner.services.crm import csvio, inquiries, records, search
from provisioner.services.provisioning import auth, billing, metering
from provisioner.web import present
from provisioner.web.common import (
    MAX_ID,
    RowId,
    client,
    count_failure,
    find_transfer,
    login_with_limits,
    provisioner,
    redeeming,
)
from provisioner.web.responses import JSONBody
from provisioner.web.security import acting, session_actor

MAX_UPLOAD = 16 * 1024 * 1024 + 65536  # a bundle is at most 16 MiB (plus its envelope)
MAX_CSV = 256 * 1024 * 1024

bearer = HTTPBearer(auto_error=False, description="the token from POST /api/login")
TenantRef = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
                                description="slug, number in your tenant list, or 'current'")]
if TYPE_CHECKING:
    RecordTypeName = str
    ExportKind = str
else:  # enumerations in the OpenAPI document
    RecordTypeName = Literal[tuple(records.TYPES)]
    ExportKind = Literal[tuple(csvio.EXPORT_COLUMNS)]


# The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in the thread
# pool, one hop each, on every request.

async def _provisioner(request: Request) -> Provisioner:
    return provisioner(request)


async def token(creds: Annotated[HTTPAuthorizationCredentials | None,
                                 Depends(bearer)]) -> str | None:
    return creds.credentials if creds is not None else None


App = Annotated[Provisioner, Depends(_provisioner)]
Token = Annotated[str | None, Depends(token)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    login: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class SwitchIn(_In):
    tenant: str = Field(min_length=1, max_length=63, description="number in your list or slug")


class SendIn(_In):
    key: str = Field(min_length=1, max_length=200, description="the copy key you were given")
    only: list[str] | None = Field(default=None, max_length=20)


class ApproveIn(_In):
    mode: Literal["replace", "merge", "upgrade"] | None = Field(
        default=None, description="default: upgrade when the tenant has a base from the "
        "transfer's source, else replace")
    only: list[str] | None = Field(default=None, max_length=20)
    remaps: dict[str, str] = Field(default_factory=dict,
                                   description='{"PICKLIST.VALUE": "NEWVALUE"}')
    force: bool = False
    keep: list[str] = Field(default_factory=list, max_length=1000,
                            description="upgrade: conflict addresses resolved as ours")
    take: list[str] = Field(default_factory=list, max_length=1000,
                            description="upgrade: conflict addresses resolved as theirs")
    prefer: Literal["ours", "theirs"] | None = None


class RejectIn(_In):
    reason: str | None = Field(default=None, max_length=2000)


class RollbackIn(_In):
    to: int = Field(ge=1, le=MAX_ID, description="the version to restore")


router = APIRouter(prefix="/api")

# --------------------------------------------------------------------------- session


@router.post("/login", tags=["session"])
def login(body: LoginIn, request: Request, app: App) -> Any:
    """Log in with login id and password: a bearer token and your tenants (first selected)."""
    result = login_with_limits(app, body.login, body.password, client(request))
    return present.login(result)


@router.post("/logout", tags=["session"])
def logout(app: App, tok: Token) -> Any:
    with app.transaction() as ctx:
        session_actor(ctx, tok)
        auth.logout(ctx, tok or "")
    return {"logged_out": True}


@router.get("/session", tags=["session"])
def session(app: App, tok: Token) -> Any:
    """Who you are, the selected tenant and your tenants."""
    with acting(app, tok) as (ctx, actor):
        choices = auth.tenants_for(ctx, actor.user_id)
    return {"login": actor.login, "selected": actor.tenant_slug, "role": actor.role,
            "tenants": [present.choice(c) for c in choices]}


@router.post("/session/tenant", tags=["session"])
def switch(body: SwitchIn, app: App, tok: Token) -> Any:
    """Select another of your tenants (number or slug) without logging in again."""
    with app.transaction() as ctx:
        session_actor(ctx, tok)
        actor = auth.switch(ctx, tok or "", body.tenant)
    return {"selected": actor.tenant_slug, "role": actor.role}


# --------------------------------------------------------------------------- tenants


@router.get("/tenants", tags=["tenants"])
def tenant_list(app: App, tok: Token) -> Any:
    with acting(app, tok) as (ctx, actor):
        return [present.choice(c) for c in auth.tenants_for(ctx, actor.user_id)]


def _group(ctx: Context, row: Tenant) -> TenantGroup | None:
    return ctx.session.get(TenantGroup, row.group_id) if row.group_id else None


@router.get("/tenants/{tenant}", tags=["tenants"])
def tenant_show(tenant: TenantRef, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        group = _group(ctx, row)
        return present.tenant(row, role=actor.role, group=group.code if group else None)


# --------------------------------------------------------------------------- configuration


@router.get("/tenants/{tenant}/config", tags=["configuration"])
def config_show(tenant: TenantRef, app: App, tok: Token,
                version: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> Any:
    """The configuration document (the current one, or an older ``version``)."""
    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        if version is None:
            head = configs.current(ctx, row)
            return {"version": head.version, "digest": head.digest, "document": head.data}
        return {"version": version, "document": configs.version_data(ctx, row.id, version)}


@router.put("/tenants/{tenant}/config", tags=["configuration"])
def config_set(tenant: TenantRef, app: App, tok: Token,
               sections: Annotated[dict[str, Any], Body(
                   description="a whole document or some of its sections")]) -> Any:
    """Replace the sections in the body (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        made = configs.set_sections(ctx, actor, row, sections)
        return {"version": made or row.config_version, "changed": made is not None}


@router.get("/tenants/{tenant}/config/history", tags=["configuration"])
def config_history(tenant: TenantRef, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        return [present.version(v, row.config_version) for v in configs.history(ctx, row)]


@router.get("/tenants/{tenant}/config/diff", tags=["configuration"])
def config_diff(tenant: TenantRef, app: App, tok: Token,
                from_version: Annotated[int, Query(alias="from", ge=1, le=MAX_ID)],
                to_version: Annotated[int, Query(alias="to", ge=1, le=MAX_ID)]) -> Any:
    from provisioner.config.diff import summarize

    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        changes = configs.diff_versions(ctx, row, from_version, to_version)
    return {"from": from_version, "to": to_version, "summary": summarize(changes),
            "changes": [c.to_dict() for c in changes]}


@router.post("/tenants/{tenant}/config/rollback", tags=["configuration"])
def config_rollback(tenant: TenantRef, body: RollbackIn, app: App, tok: Token) -> Any:
    """Make an older version current again, as a new version (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        made = configs.rollback(ctx, actor, row, body.to)
    return {"version": made, "restored": body.to, "changed": made is not None}


# --------------------------------------------------------------------------- copy keys


@router.get("/tenants/{tenant}/keys", tags=["copy keys"])
def key_list(tenant: TenantRef, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        now = ctx.clock.now()
        return [present.key(k, now) for k in copykeys.list_keys(ctx, actor)]


@router.post("/tenants/{tenant}/keys", tags=["copy keys"], status_code=201)
def key_generate(tenant: TenantRef, app: App, tok: Token) -> Any:
    """A new copy key for this (target) tenant: 24 hours, one delivery, shown only now."""
    with acting(app, tok, tenant) as (ctx, actor):
        made = copykeys.generate(ctx, actor, actors.get_tenant(ctx, actor.tenant_slug))
    return {"key": made.text, "id": made.id, "selector": made.selector,
            "expires_at": present.instant(made.expires_at)}


@router.post("/tenants/{tenant}/keys/{key_id}/revoke", tags=["copy keys"])
def key_revoke(tenant: TenantRef, key_id: RowId, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        row = copykeys.revoke(ctx, actor, str(key_id))
        return present.key(row, ctx.clock.now())


# --------------------------------------------------------------------------- send / receive


@router.post("/tenants/{tenant}/send", tags=["transfers"], status_code=201)
def send(tenant: TenantRef, body: SendIn, request: Request, app: App, tok: Token) -> Any:
    """Send this tenant's configuration to the tenant whose admin generated the key."""
    k = redeeming(request)
    try:
        with acting(app, tok, tenant) as (ctx, actor):
            made = transfers.send(ctx, actor, body.key, only=body.only)
            target = ctx.session.get(Tenant, made.tenant_id)
            return present.transfer(made) | {"target": target.slug if target else None}
    except ProvisionerError as exc:
        count_failure(request, k, exc)
        raise


@router.post("/tenants/{tenant}/receive", tags=["transfers"], status_code=201)
def receive(tenant: TenantRef, request: Request, app: App, tok: Token,
            bundle: Annotated[UploadFile, File(description="a bundle file made with "
                                                             "'bundle export --key'")]) -> Any:
    """Take a bundle file into this tenant's inbox (admins)."""
    k = redeeming(request)
    raw = bundle.file.read(MAX_UPLOAD + 1)
    if len(raw) > MAX_UPLOAD:
        raise BundleRejected("the bundle file is larger than 16 MiB")
    try:
        with acting(app, tok, tenant) as (ctx, actor):
            return present.transfer(transfers.receive(ctx, actor, raw))
    except ProvisionerError as exc:
        count_failure(request, k, exc)
        raise


# --------------------------------------------------------------------------- inbox




@router.get("/tenants/{tenant}/inbox", tags=["transfers"])
def inbox_list(tenant: TenantRef, app: App, tok: Token,
               status: Literal["pending", "applied", "rejected", "rolled_back"] | None = None,
               ) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return [present.transfer(t) for t in transfers.inbox(ctx, actor, status=status)]


@router.get("/tenants/{tenant}/inbox/{transfer_id}", tags=["transfers"])
def inbox_show(tenant: TenantRef, transfer_id: RowId, app: App, tok: Token,
               mode: Literal["replace", "merge", "upgrade"] | None = None,
               only: Annotated[str | None, Query(max_length=500,
                                                 description="comma-separated sections")] = None,
               ) -> Any:
    """The plan (per section: added, changed, removed) and its impact on the records."""
    with acting(app, tok, tenant) as (ctx, actor):
        row = find_transfer(ctx, actor, transfer_id)
        plan = transfers.preview(ctx, row, mode=mode, only=only.split(",") if only else None)
        return present.transfer(row) | {"plan": plan}


@router.post("/tenants/{tenant}/inbox/{transfer_id}/approve", tags=["transfers"])
def inbox_approve(tenant: TenantRef, transfer_id: RowId, app: App, tok: Token,
                  body: ApproveIn | None = None) -> Any:
    """Apply the transfer in one transaction (admins). 409 when it had to be planned again."""
    body = body or ApproveIn()
    with acting(app, tok, tenant) as (ctx, actor):
        decision = transfers.approve(ctx, actor, transfer_id, mode=body.mode, only=body.only,
                                     remaps=body.remaps, force=body.force, keep=body.keep,
                                     take=body.take, prefer=body.prefer)
        out = present.transfer(decision.transfer) | {
            "outcome": decision.outcome, "version": decision.version,
            "message": decision.message,
            "remapped": getattr(decision, "remapped", None),
            "forced": getattr(decision, "forced", None)}
    if decision.outcome == "replanned":
        return JSONBody({"error": {"code": "replanned", "message": decision.message}} | out,
                        status_code=409)
    return out


@router.post("/tenants/{tenant}/inbox/{transfer_id}/reject", tags=["transfers"])
def inbox_reject(tenant: TenantRef, transfer_id: RowId, app: App, tok: Token,
                 body: RejectIn | None = None) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        decision = transfers.reject(ctx, actor, transfer_id,
                                    reason=body.reason if body else None)
        return present.transfer(decision.transfer)


@router.post("/tenants/{tenant}/inbox/{transfer_id}/rollback", tags=["transfers"])
def inbox_rollback(tenant: TenantRef, transfer_id: RowId, app: App, tok: Token) -> Any:
    """Undo an applied transfer: the version before it becomes current again (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        made = transfers.rollback(ctx, actor, transfer_id)
    return {"transfer": transfer_id, "version": made}


# --------------------------------------------------------------------------- records


@router.post("/tenants/{tenant}/records/{type_name}", tags=["records"], status_code=201)
def record_create(tenant: TenantRef, type_name: RecordTypeName, app: App, tok: Token,
                  values: Annotated[dict[str, Any], Body()],
                  purpose: Annotated[str | None, Query(max_length=500)] = None) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        saved = records.create(ctx, actor, type_name, values, purpose=purpose)
    return {"record": saved.record, "duplicates": saved.duplicates}


@router.get("/tenants/{tenant}/records/{type_name}/{record_id}", tags=["records"])
def record_show(tenant: TenantRef, type_name: RecordTypeName, record_id: RowId, app: App,
                tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return records.show(ctx, actor, type_name, record_id)


@router.patch("/tenants/{tenant}/records/{type_name}/{record_id}", tags=["records"])
def record_update(tenant: TenantRef, type_name: RecordTypeName, record_id: RowId, app: App,
                  tok: Token, values: Annotated[dict[str, Any], Body()],
                  purpose: Annotated[str | None, Query(max_length=500)] = None) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        saved = records.update(ctx, actor, type_name, record_id, values, purpose=purpose)
    return {"record": saved.record, "duplicates": saved.duplicates}


@router.delete("/tenants/{tenant}/records/{type_name}/{record_id}", tags=["records"])
def record_delete(tenant: TenantRef, type_name: RecordTypeName, record_id: RowId, app: App,
                  tok: Token, purpose: Annotated[str | None, Query(max_length=500)] = None,
                  ) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        records.delete_record(ctx, actor, type_name, record_id, purpose=purpose)
    return {"deleted": record_id}


@router.get("/tenants/{tenant}/contacts/{record_id}/{type_name}", tags=["records"])
def record_children(tenant: TenantRef, record_id: RowId,
                    type_name: Literal["family", "card_exchange", "secret_note", "activity",
                                       "purchase", "external_link"],
                    app: App, tok: Token,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
    """A contact's family, card exchanges, own secret notes, activities, purchases, links."""
    with acting(app, tok, tenant) as (ctx, actor):
        return records.list_children(ctx, actor, type_name, record_id, limit=limit)


class SearchParams(BaseModel):
    """Query parameters of customer search (as the CLI's search options)."""

    q: str = Field(default="", max_length=500)
    match: Literal["all", "any"] = "all"
    field: list[str] = Field(default_factory=list, max_length=20,
                             description="FIELD=TEXT, e.g. kana=タナカ")
    checked: list[Annotated[int, Field(ge=1, le=48)]] = Field(default_factory=list,
                                                              max_length=48)
    unchecked: list[Annotated[int, Field(ge=1, le=48)]] = Field(default_factory=list,
                                                                max_length=48)
    classification: str | None = Field(default=None, max_length=63)
    updated_from: str | None = Field(default=None, max_length=10)
    updated_to: str | None = Field(default=None, max_length=10)
    activity_kind: str | None = Field(default=None, max_length=63)
    activity_text: str | None = Field(default=None, max_length=500)
    activity_from: str | None = Field(default=None, max_length=10)
    activity_to: str | None = Field(default=None, max_length=10)
    purchase_product: str | None = Field(default=None, max_length=200)
    purchase_from: str | None = Field(default=None, max_length=10)
    purchase_to: str | None = Field(default=None, max_length=10)
    purchase_shipped: bool | None = None
    purchase_paid: bool | None = None
    purchase_payment_method: str | None = Field(default=None, max_length=63)
    birthday_from: str | None = Field(default=None, max_length=10)
    birthday_to: str | None = Field(default=None, max_length=10)
    created_from: str | None = Field(default=None, max_length=10,
                                     description="registered on or after (YYYY-MM-DD)")
    created_to: str | None = Field(default=None, max_length=10)
    age_from: int | None = Field(default=None, ge=0, le=200)
    age_to: int | None = Field(default=None, ge=0, le=200)
    title: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=20)
    department: str | None = Field(default=None, max_length=200)
    sort: str = Field(default="id", max_length=20)
    limit: int = Field(default=50, ge=0, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_ID)

    def query(self) -> search.Query:
        fields: dict[str, str] = {}
        for spec in self.field:
            name, sep, value = spec.partition("=")
            if not sep:
                raise ValidationFailed(f"field {spec!r}: write FIELD=TEXT")
            fields[name] = value
        for name in ("title", "postal_code", "department"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        boxes = {i: True for i in self.checked}
        for i in self.unchecked:
            if i in boxes:
                raise ValidationFailed(f"checkbox {i} cannot be both checked and unchecked")
            boxes[i] = False
        data = self.model_dump(exclude={"field", "checked", "unchecked", "title",
                                        "postal_code", "department"})
        return search.Query(fields=fields, checkboxes=boxes, **data)


Search = Annotated[SearchParams, Query()]


@router.get("/tenants/{tenant}/search", tags=["records"])
def search_customers(tenant: TenantRef, params: Search, app: App, tok: Token) -> Any:
    """Partial-match customer search: the exact total and one page."""
    query = params.query()
    with acting(app, tok, tenant, read_only=True) as (ctx, actor):
        result = search.search(ctx, actor, query)
    return JSONBody({"total": result.total, "items": result.items})


@router.get("/tenants/{tenant}/lookup", tags=["records"])
async def lookup(tenant: TenantRef, app: App, tok: Token,
                 phone: Annotated[str, Query(min_length=1, max_length=40,
                                             description="any formatting: 03-1234-5678, "
                                             "+81 3 1234 5678, full-width digits")],
                 call_id: Annotated[str | None, Query(
                     min_length=1, max_length=100,
                     description="the telephony side's call id: recorded and charged once")
                 ] = None) -> Any:
    """The caller's card (CTI screen pop): profile, latest purchases and activities.

    The screen pop is the metered call: the call and its charge are recorded
    (once per ``call_id``), also for a caller no customer has (then 404)."""
    # The reads run in a read-only transaction here on the event loop: a worker-thread
    # hop would cost more than the reads themselves, and a read-only transaction never
    # waits for the write lock. (On PostgreSQL, handing the probes' round trips to
    # worker threads was measured slower: 369 against 1,013 lookups/s with two
    # workers.) The call record and a personal-information view to log are written
    # (and committed) in a worker thread, as that may wait for the write lock, before
    # the card (or the "not found") is sent: no card without its call recorded.
    log_rows: list[Any] = []
    try:
        with acting(app, tok, tenant, read_only=True, log_rows=log_rows) as (ctx, actor):
            card = metering.screen_pop(ctx, actor, phone, call_ref=call_id)
    finally:
        if log_rows:
            await run_in_threadpool(app.write_log_rows, log_rows)
    return JSONBody(card)


class CallNoteIn(_In):
    note: str = Field(min_length=1, max_length=20000, description="typed during the call")


class CallOut(BaseModel):
    """A recorded (metered) call."""

    id: int | None = Field(description="the call number (None until written)")
    ref: str | None = Field(description="the telephony side's call id")
    number: str
    classification: Literal["customer", "employee", "nuisance", "unknown"]
    in_hours: bool
    charge_jpy: int
    at: str
    contact_id: int | None = Field(description="the customer it popped up")


@router.post("/tenants/{tenant}/calls/{call_ref}/note", tags=["records"],
             response_model=CallOut)
def call_note(tenant: TenantRef,
              call_ref: Annotated[str, Path(min_length=1, max_length=100)],
              body: CallNoteIn, app: App, tok: Token) -> Any:
    """Contact history typed during a call (by the call id given to the lookup): an
    activity of the customer it popped up. Refused for nuisance callers."""
    with acting(app, tok, tenant) as (ctx, actor):
        row = metering.add_contact_history(ctx, actor, None, body.note, call_ref=call_ref)
        return metering.call_summary(row)


@router.post("/tenants/{tenant}/import/customers", tags=["csv"])
def import_customers(tenant: TenantRef, app: App, tok: Token,
                     file: Annotated[UploadFile, File(description="CSV: UTF-8, UTF-8 with "
                                                                  "BOM or CP932")],
                     dry_run: Annotated[bool, Form()] = False) -> Any:
    """Import customers, all rows or none (admins); ``dry_run`` checks every row."""
    raw = file.file.read(MAX_CSV + 1)
    if len(raw) > MAX_CSV:
        raise ValidationFailed("the CSV file is larger than 256 MiB", hint="split it")
    with acting(app, tok, tenant) as (ctx, actor):
        report = csvio.import_customers(ctx, actor, raw, dry_run=dry_run,
                                        source=file.filename or "upload")
    return {"rows": report.rows, "created": report.created, "encoding": report.encoding,
            "companies_created": report.companies_created, "dry_run": dry_run}


class InquiryImportOut(BaseModel):
    rows: int = Field(description="data rows in the file (blank lines skipped)")
    created: int = Field(description="activities created (0 on a dry run)")
    encoding: str
    dry_run: bool


@router.post("/tenants/{tenant}/import/inquiries", tags=["csv"],
             response_model=InquiryImportOut)
def import_inquiries(tenant: TenantRef, app: App, tok: Token,
                     file: Annotated[UploadFile, File(description="CSV: UTF-8, UTF-8 with "
                                                                  "BOM or CP932")],
                     dry_run: Annotated[bool, Form()] = False) -> Any:
    """Import inquiries (contact history) of existing customers, all rows or none; each
    row is created like a single activity (rules apply)."""
    raw = file.file.read(MAX_CSV + 1)
    if len(raw) > MAX_CSV:
        raise ValidationFailed("the CSV file is larger than 256 MiB", hint="split it")
    with acting(app, tok, tenant) as (ctx, actor):
        report = inquiries.import_inquiries(ctx, actor, raw, dry_run=dry_run,
                                            source=file.filename or "upload")
    return {"rows": report.rows, "created": report.created, "encoding": report.encoding,
            "dry_run": dry_run}


@router.get("/tenants/{tenant}/export/{kind}", tags=["csv"],
            responses={200: {"content": {"text/csv": {}}}})
def export(tenant: TenantRef, kind: ExportKind, params: Search, app: App, tok: Token,
           encoding: Literal["utf-8-sig", "cp932"] = "utf-8-sig",
           columns: Annotated[str | None, Query(max_length=2000,
                                                description="comma-separated, in order")] = None,
           ) -> Response:
    """CSV (Excel-friendly) of the customers a search finds, or of their history."""
    query = params.query()
    with acting(app, tok, tenant) as (ctx, actor):
        data = csvio.export(ctx, actor, kind, query,
                            columns=columns.split(",") if columns else None, encoding=encoding)
    charset = "shift_jis" if encoding == "cp932" else "utf-8"
    return Response(data, media_type=f"text/csv; charset={charset}", headers={
        "Content-Disposition": f'attachment; filename="{actor.tenant_slug}-{kind}.csv"'})


# --------------------------------------------------------------------------- users

Login = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$",
                            description="the user's login id")]


class UserOut(BaseModel):
    """A user of the tenant, as its admins see them."""

    login: str
    name: str
    role: str
    disabled: bool = Field(description="cannot log in to or act in the tenant")
    department: str | None = Field(description="a code of the user department master")
    member_since: str


class RoleIn(_In):
    role: str = Field(min_length=1, max_length=63, description="a built-in or configured role")


class DepartmentIn(_In):
    code: str | None = Field(default=None, max_length=63,
                             description="a code of the master; null clears it")


class DepartmentOut(BaseModel):
    code: str
    name: str


class NewDepartmentIn(_In):
    code: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=200)


class RemovedOut(BaseModel):
    removed: str


class PasswordResetOut(BaseModel):
    login: str
    password: str = Field(description="the new password, shown only now")


@router.get("/tenants/{tenant}/users", tags=["users"], response_model=list[UserOut])
def user_list(tenant: TenantRef, app: App, tok: Token) -> Any:
    """The tenant's users with role, disabled flag and department (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return users.list_users(ctx, actor)


@router.put("/tenants/{tenant}/users/{login}/role", tags=["users"], response_model=UserOut)
def user_role(tenant: TenantRef, login: Login, body: RoleIn, app: App, tok: Token) -> Any:
    """Give the user another role (admins; the tenant keeps an enabled admin)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return users.set_role(ctx, actor, login, body.role)


@router.post("/tenants/{tenant}/users/{login}/disable", tags=["users"], response_model=UserOut)
def user_disable(tenant: TenantRef, login: Login, app: App, tok: Token) -> Any:
    """The user can no longer log in to or act in the tenant; their sessions end."""
    with acting(app, tok, tenant) as (ctx, actor):
        return users.disable(ctx, actor, login)


@router.post("/tenants/{tenant}/users/{login}/enable", tags=["users"], response_model=UserOut)
def user_enable(tenant: TenantRef, login: Login, app: App, tok: Token) -> Any:
    """Enable a disabled user again (within the licensed user count)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return users.enable(ctx, actor, login)


@router.delete("/tenants/{tenant}/users/{login}", tags=["users"], response_model=RemovedOut)
def user_remove(tenant: TenantRef, login: Login, app: App, tok: Token) -> Any:
    """Remove the user from the tenant (their login and other tenants stay)."""
    with acting(app, tok, tenant) as (ctx, actor):
        users.remove(ctx, actor, login)
    return {"removed": login}


@router.post("/tenants/{tenant}/users/{login}/password-reset", tags=["users"],
             response_model=PasswordResetOut)
def user_password_reset(tenant: TenantRef, login: Login, app: App, tok: Token) -> Any:
    """A new random password for the user (shown once; their sessions end). Refused when
    the user also has tenants outside this tenant's group (the password is shared)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return {"login": login, "password": users.reset_password(ctx, actor, login)}


@router.put("/tenants/{tenant}/users/{login}/department", tags=["users"],
            response_model=UserOut)
def user_department(tenant: TenantRef, login: Login, body: DepartmentIn, app: App,
                    tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return users.set_department(ctx, actor, login, body.code)


@router.get("/tenants/{tenant}/user-departments", tags=["users"],
            response_model=list[DepartmentOut])
def department_list(tenant: TenantRef, app: App, tok: Token) -> Any:
    """The user department master (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return users.departments(ctx, actor)


@router.post("/tenants/{tenant}/user-departments", tags=["users"], status_code=201,
             response_model=DepartmentOut)
def department_add(tenant: TenantRef, body: NewDepartmentIn, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return users.add_department(ctx, actor, body.code, body.name)


# --------------------------------------------------------------------------- billing


@router.get("/tenants/{tenant}/billing", tags=["billing"])
def billing_show(tenant: TenantRef, app: App, tok: Token,
                 month: Annotated[str, Query(pattern=r"^(19|20)\d\d-(0[1-9]|1[0-2])$",
                                             description="YYYY-MM")]) -> Any:
    """The monthly bill of the tenant's group, itemised (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        actors.require_admin(actor, "read the bill")
        group = _group(ctx, actors.get_tenant(ctx, actor.tenant_slug))
        if group is None:
            raise NotFound(f"tenant {actor.tenant_slug!r} is not in a tenant group",
                           hint="bills are per tenant group")
        return billing.group_bill(ctx, group.code, month).to_dict()


# Routes are matched one by one in order: the call-centre paths (a lookup per incoming
# call) go first rather than after fifty others.
_FIRST = ("/api/tenants/{tenant}/lookup", "/api/tenants/{tenant}/search")
router.routes.sort(key=lambda r: getattr(r, "path", "") not in _FIRST)
