"""The JSON API: the same service calls as the CLI, over HTTP (``/api/...``).

Every route opens one transaction, finds the acting user from the bearer
token (``security.acting``) and calls the service layer, which checks the
permissions. Tenant-scoped routes name the tenant in the path
(``/api/tenants/{tenant}/...``: its slug, its number in the user's list, or
``current`` for the session's selected tenant); a tenant the user is not a
member of is refused with 403, and another tenant's transfer, key or record
is "not found" (404).

The contract is in the declarations: each route names its request body and
query models, its answer (``response_model``, from :mod:`provisioner.web.models`)
and the error statuses it can answer (``responses=errors(...)``, all with the
one error body). A new route follows the same pattern::

    @router.post("/tenants/{tenant}/things", tags=["things"], status_code=201,
                 response_model=ThingOut, responses=errors(409))
    def thing_create(tenant: TenantRef, body: ThingIn, app: App, tok: Token) -> Any:
        with acting(app, tok, tenant) as (ctx, actor):
            return things.create(ctx, actor, body.model_dump())
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Body,
    Depends,
    FastAPI,
    File,
    Form,
    Path,
    Query,
    Request,
    UploadFile,
)
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from provisioner.db.models import Tenant
from provisioner.db.provisioning_models import TenantGroup
from provisioner.errors import (
    BundleRejected,
    NotFound,
    ProvisionerError,
    Unauthenticated,
    ValidationFailed,
)
from provisioner.services import actors, configs, copykeys, transfers, users
from provisioner.services.context import Context, Provisioner
from provisioner.services.crm import company_search, csvio, inquiries, records, search
from provisioner.services.provisioning import auth, billing, metering
from provisioner.web import models, present
from provisioner.web.common import (
    MAX_CSV,
    client,
    count_failure,
    find_transfer,
    login_with_limits,
    redeeming,
)
from provisioner.web.models import (
    MAX_ID as MAX_ID,  # (the console uses api.MAX_ID)
)
from provisioner.web.models import (
    ApproveIn as ApproveIn,  # (the console uses api.ApproveIn)
)
from provisioner.web.models import (
    LoginIn,
    RejectIn,
    RollbackIn,
    SendIn,
    SwitchIn,
)
from provisioner.web.query_models import query_model
from provisioner.web.responses import AUTHENTICATED, JSONBody, errors
from provisioner.web.security import (
    RateLimiter,
    Settings,
    acting,
    session_actor,
    token_from_header,
)

MAX_UPLOAD = 16 * 1024 * 1024 + 65536  # a bundle is at most 16 MiB (plus its envelope)

bearer = HTTPBearer(auto_error=False, description="the token from POST /api/login")
TenantRef = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="slug, number in your tenant list, or 'current'",
    ),
]
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
#: the record types listed under a contact (GET .../contacts/{id}/{type})
CHILD_TYPES = (
    "job",
    "family",
    "card_exchange",
    "secret_note",
    "activity",
    "purchase",
    "external_link",
)
Version = Annotated[int | None, Query(ge=1, le=MAX_ID)]
if TYPE_CHECKING:
    RecordTypeName = str
    ExportKind = str
else:  # enumerations in the OpenAPI document
    RecordTypeName = Literal[tuple(records.TYPES)]
    ExportKind = Literal[tuple(csvio.EXPORT_COLUMNS)]


def provisioner(request: Request) -> Provisioner:
    app: Provisioner = request.app.state.provisioner
    return app


# The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in the thread
# pool, one hop each, on every request.


async def _provisioner(request: Request) -> Provisioner:
    return provisioner(request)


async def token(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str | None:
    return creds.credentials if creds is not None else None


def limiter(request: Request) -> RateLimiter:
    lim: RateLimiter = request.app.state.limiter
    return lim


def settings(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


App = Annotated[Provisioner, Depends(_provisioner)]
Token = Annotated[str | None, Depends(token)]


def operation_id(route: APIRoute) -> str:
    """The route function's name: what generated clients call the operation."""
    return route.name


router = APIRouter(prefix="/api", generate_unique_id_function=operation_id)


def links(status: int, **targets: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI links from a success answer to the operations that take what it names:
    ``links(201, show_contact={"record_id": "$response.body#/record/id"})``. The tenant
    of the path is carried over unless a target names it (``None``: not given);
    ``requestBody`` in a target is its body."""
    out: dict[str, Any] = {}
    for operation_id, parameters in targets.items():
        params = {"tenant": "$request.path.tenant"} | {
            k: v for k, v in parameters.items() if k != "requestBody"
        }
        link: dict[str, Any] = {
            "operationId": operation_id,
            "parameters": {k: v for k, v in params.items() if v is not None},
        }
        if "requestBody" in parameters:
            link["requestBody"] = parameters["requestBody"]
        out[operation_id] = link
    return {status: {"links": out}}


def whole_numbers(doc: Any) -> Any:
    """The document with whole-number floats as integers (FastAPI's OpenAPI models keep
    ``minimum``/``maximum`` as floats: 48.0)."""
    if isinstance(doc, dict):
        return {k: whole_numbers(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [whole_numbers(v) for v in doc]
    if isinstance(doc, float) and doc.is_integer():
        return int(doc)
    return doc


# --------------------------------------------------------------------------- session


@router.post(
    "/login",
    tags=["session"],
    response_model=models.LoginOut,
    responses=errors(400, 403, 429, base=(422, 503)),
)
def login(body: LoginIn, request: Request, app: App) -> Any:
    """Log in with login id and password: a bearer token and your tenants (first selected)."""
    result = login_with_limits(app, body.login, body.password, client(request))
    return present.login(result)


@router.post(
    "/logout",
    tags=["session"],
    response_model=models.LogoutOut,
    responses=errors(base=AUTHENTICATED),
)
def logout(app: App, tok: Token) -> Any:
    with app.transaction() as ctx:
        session_actor(ctx, tok)
        auth.logout(ctx, tok or "")
    return {"logged_out": True}


@router.get(
    "/session",
    tags=["session"],
    response_model=models.SessionOut,
    responses=errors(base=AUTHENTICATED),
)
def session(app: App, tok: Token) -> Any:
    """Who you are, the selected tenant and your tenants."""
    with acting(app, tok) as (ctx, actor):
        choices = auth.tenants_for(ctx, actor.user_id)
    return {
        "login": actor.login,
        "selected": actor.tenant_slug,
        "role": actor.role,
        "tenants": [present.choice(c) for c in choices],
    }


@router.post(
    "/session/tenant",
    tags=["session"],
    response_model=models.SwitchOut,
    responses=errors(400, 403, 404, base=AUTHENTICATED),
)
def switch(body: SwitchIn, app: App, tok: Token) -> Any:
    """Select another of your tenants (number or slug) without logging in again."""
    with app.transaction() as ctx:
        session_actor(ctx, tok)
        actor = auth.switch(ctx, tok or "", body.tenant)
    return {"selected": actor.tenant_slug, "role": actor.role}


# --------------------------------------------------------------------------- tenants


@router.get(
    "/tenants",
    tags=["tenants"],
    response_model=list[models.TenantChoice],
    responses=errors(base=AUTHENTICATED),
)
def tenant_list(app: App, tok: Token) -> Any:
    with acting(app, tok) as (ctx, actor):
        return [present.choice(c) for c in auth.tenants_for(ctx, actor.user_id)]


def _group(ctx: Context, row: Tenant) -> TenantGroup | None:
    return ctx.session.get(TenantGroup, row.group_id) if row.group_id else None


@router.get(
    "/tenants/{tenant}", tags=["tenants"], response_model=models.TenantOut, responses=errors()
)
def tenant_show(tenant: TenantRef, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        group = _group(ctx, row)
        return present.tenant(row, role=actor.role, group=group.code if group else None)


# --------------------------------------------------------------------------- configuration

#: the body of PUT .../config: at least one section (each is checked by the service)
SECTIONS_SCHEMA: dict[str, Any] = {
    "propertyNames": {"enum": ["schema_version", *models.SECTIONS]},
    "anyOf": [{"required": [name]} for name in models.SECTIONS],
}
_SECTION = f"({'|'.join(models.SECTIONS)})"


@router.get(
    "/tenants/{tenant}/config",
    tags=["configuration"],
    response_model=models.ConfigOut,
    responses=errors(),
)
def config_show(
    tenant: TenantRef,
    app: App,
    tok: Token,
    version: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Any:
    """The configuration document (the current one, or an older ``version``)."""
    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        if version is None:
            head = configs.current(ctx, row)
            return {"version": head.version, "digest": head.digest, "document": head.data}
        return {
            "version": version,
            "digest": None,
            "document": configs.version_data(ctx, row.id, version),
        }


@router.put(
    "/tenants/{tenant}/config",
    tags=["configuration"],
    response_model=models.ConfigSetOut,
    responses=errors(400, 409, 413),
)
def config_set(
    tenant: TenantRef,
    app: App,
    tok: Token,
    sections: Annotated[
        dict[str, Any],
        Body(
            description="a whole document or some of its sections",
            json_schema_extra=SECTIONS_SCHEMA,
        ),
    ],
) -> Any:
    """Replace the sections in the body (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        made = configs.set_sections(ctx, actor, row, sections)
        return {"version": made or row.config_version, "changed": made is not None}


@router.get(
    "/tenants/{tenant}/config/history",
    tags=["configuration"],
    response_model=list[models.VersionOut],
    responses=errors(),
)
def config_history(tenant: TenantRef, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        return [present.version(v, row.config_version) for v in configs.history(ctx, row)]


@router.get(
    "/tenants/{tenant}/config/diff",
    tags=["configuration"],
    response_model=models.DiffOut,
    responses=errors(),
)
def config_diff(
    tenant: TenantRef,
    app: App,
    tok: Token,
    from_version: Annotated[int, Query(alias="from", ge=1, le=MAX_ID)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=MAX_ID)],
) -> Any:
    from provisioner.config.diff import summarize

    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        changes = configs.diff_versions(ctx, row, from_version, to_version)
    return {
        "from": from_version,
        "to": to_version,
        "summary": summarize(changes),
        "changes": [c.to_dict() for c in changes],
    }


@router.post(
    "/tenants/{tenant}/config/rollback",
    tags=["configuration"],
    response_model=models.RollbackOut,
    responses=errors(400, 409, 413),
)
def config_rollback(tenant: TenantRef, body: RollbackIn, app: App, tok: Token) -> Any:
    """Make an older version current again, as a new version (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        row = actors.get_tenant(ctx, actor.tenant_slug)
        made = configs.rollback(ctx, actor, row, body.to)
    return {"version": made, "restored": body.to, "changed": made is not None}


# --------------------------------------------------------------------------- copy keys


@router.get(
    "/tenants/{tenant}/keys",
    tags=["copy keys"],
    response_model=list[models.KeyOut],
    responses=errors(),
)
def key_list(tenant: TenantRef, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        now = ctx.clock.now()
        return [present.key(k, now) for k in copykeys.list_keys(ctx, actor)]


@router.post(
    "/tenants/{tenant}/keys",
    tags=["copy keys"],
    status_code=201,
    response_model=models.NewKeyOut,
    responses=errors()
    | links(
        201,
        send={
            "tenant": None,  # the key is for another tenant to send with
            "requestBody": {"key": "$response.body#/key"},
        },
        key_revoke={"key_id": "$response.body#/id"},
    ),
)
def key_generate(tenant: TenantRef, app: App, tok: Token) -> Any:
    """A new copy key for this (target) tenant: 24 hours, one delivery, shown only now."""
    with acting(app, tok, tenant) as (ctx, actor):
        made = copykeys.generate(ctx, actor, actors.get_tenant(ctx, actor.tenant_slug))
    return {
        "key": made.text,
        "id": made.id,
        "selector": made.selector,
        "expires_at": present.instant(made.expires_at),
    }


@router.post(
    "/tenants/{tenant}/keys/{key_id}/revoke",
    tags=["copy keys"],
    response_model=models.KeyOut,
    responses=errors(409),
)
def key_revoke(tenant: TenantRef, key_id: RowId, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        row = copykeys.revoke(ctx, actor, str(key_id))
        return present.key(row, ctx.clock.now())


# --------------------------------------------------------------------------- send / receive


@router.post(
    "/tenants/{tenant}/send",
    tags=["transfers"],
    status_code=201,
    response_model=models.SentOut,
    responses=errors(400, 409, 413, 429)
    | links(
        201,
        **{
            op: {"tenant": "$response.body#/target", "transfer_id": "$response.body#/id"}
            for op in ("inbox_show", "inbox_approve", "inbox_reject")
        },
    ),
)
def send(tenant: TenantRef, body: SendIn, request: Request, app: App, tok: Token) -> Any:
    """Send this tenant's configuration to the tenant whose admin generated the key."""
    k = None
    try:
        with acting(app, tok, tenant) as (ctx, actor):
            k = redeeming(request)  # after the session check: no session is 401, not 429
            made = transfers.send(ctx, actor, body.key, only=body.only)
            target = ctx.session.get(Tenant, made.tenant_id)
            return present.transfer(made) | {"target": target.slug if target else None}
    except ProvisionerError as exc:
        if k is not None:
            count_failure(request, k, exc)
        raise


@router.post(
    "/tenants/{tenant}/receive",
    tags=["transfers"],
    status_code=201,
    response_model=models.TransferOut,
    responses=errors(400, 409, 413, 429),
)
def receive(
    tenant: TenantRef,
    request: Request,
    app: App,
    tok: Token,
    bundle: Annotated[
        UploadFile, File(description="a bundle file made with 'bundle export --key'")
    ],
) -> Any:
    """Take a bundle file into this tenant's inbox (admins)."""
    k = None
    try:
        with acting(app, tok, tenant) as (ctx, actor):
            k = redeeming(request)  # after the session check: no session is 401, not 429
            raw = bundle.file.read(MAX_UPLOAD + 1)
            if len(raw) > MAX_UPLOAD:
                raise BundleRejected("the bundle file is larger than 16 MiB")
            return present.transfer(transfers.receive(ctx, actor, raw))
    except ProvisionerError as exc:
        if k is not None:
            count_failure(request, k, exc)
        raise


# --------------------------------------------------------------------------- inbox


@router.get(
    "/tenants/{tenant}/inbox",
    tags=["transfers"],
    response_model=list[models.TransferOut],
    responses=errors(),
)
def inbox_list(
    tenant: TenantRef,
    app: App,
    tok: Token,
    status: Literal["pending", "applied", "rejected", "rolled_back"] | None = None,
) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return [present.transfer(t) for t in transfers.inbox(ctx, actor, status=status)]


@router.get(
    "/tenants/{tenant}/inbox/{transfer_id}",
    tags=["transfers"],
    response_model=models.PlanOut,
    responses=errors(409),
)
def inbox_show(
    tenant: TenantRef,
    transfer_id: RowId,
    app: App,
    tok: Token,
    mode: Literal["replace", "merge", "upgrade"] | None = None,
    only: Annotated[
        str | None,
        Query(
            max_length=500,
            pattern=rf"^{_SECTION}(,{_SECTION})*$",
            description="comma-separated sections",
        ),
    ] = None,
) -> Any:
    """The plan (per section: added, changed, removed) and its impact on the records."""
    with acting(app, tok, tenant) as (ctx, actor):
        row = find_transfer(ctx, actor, transfer_id)
        plan = transfers.preview(ctx, row, mode=mode, only=only.split(",") if only else None)
        return present.transfer(row) | {"plan": plan}


@router.post(
    "/tenants/{tenant}/inbox/{transfer_id}/approve",
    tags=["transfers"],
    response_model=models.DecisionOut,
    responses=errors(400, 409, 413)
    | links(200, inbox_rollback={"transfer_id": "$response.body#/id"}),
)
def inbox_approve(
    tenant: TenantRef, transfer_id: RowId, app: App, tok: Token, body: ApproveIn | None = None
) -> Any:
    """Apply the transfer in one transaction (admins). 409 when it had to be planned again."""
    body = body or ApproveIn()
    with acting(app, tok, tenant) as (ctx, actor):
        decision = transfers.approve(
            ctx,
            actor,
            transfer_id,
            mode=body.mode,
            only=body.only,
            remaps=body.remaps,
            force=body.force,
            keep=body.keep,
            take=body.take,
            prefer=body.prefer,
        )
        out = present.transfer(decision.transfer) | {
            "outcome": decision.outcome,
            "version": decision.version,
            "message": decision.message,
            "remapped": getattr(decision, "remapped", None),
            "forced": getattr(decision, "forced", None),
        }
    if decision.outcome == "replanned":
        return JSONBody(
            {"error": {"code": "replanned", "message": decision.message}} | out, status_code=409
        )
    return out


@router.post(
    "/tenants/{tenant}/inbox/{transfer_id}/reject",
    tags=["transfers"],
    response_model=models.TransferOut,
    responses=errors(400, 409),
)
def inbox_reject(
    tenant: TenantRef, transfer_id: RowId, app: App, tok: Token, body: RejectIn | None = None
) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        decision = transfers.reject(ctx, actor, transfer_id, reason=body.reason if body else None)
        return present.transfer(decision.transfer)


@router.post(
    "/tenants/{tenant}/inbox/{transfer_id}/rollback",
    tags=["transfers"],
    response_model=models.TransferRollbackOut,
    responses=errors(409, 413),
)
def inbox_rollback(tenant: TenantRef, transfer_id: RowId, app: App, tok: Token) -> Any:
    """Undo an applied transfer: the version before it becomes current again (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        made = transfers.rollback(ctx, actor, transfer_id)
    return {"transfer": transfer_id, "version": made}


# --------------------------------------------------------------------------- records


Purpose = Annotated[str | None, Query(max_length=500, description="why (kept in the change log)")]


def _record_routes(type_name: str) -> None:
    """create, show, update and delete of one record type (each with its own body model)."""
    create_in, update_in, record = models.RECORD_MODELS[type_name]
    saved = models.saved_model(type_name)
    path = f"/tenants/{{tenant}}/records/{type_name}"

    def create(
        tenant: TenantRef, app: App, tok: Token, values: models.In, purpose: Purpose = None
    ) -> Any:
        with acting(app, tok, tenant) as (ctx, actor):
            made = records.create(
                ctx, actor, type_name, values.model_dump(exclude_unset=True), purpose=purpose
            )
        return {"record": made.record, "duplicates": made.duplicates}

    def show(tenant: TenantRef, record_id: RowId, app: App, tok: Token) -> Any:
        with acting(app, tok, tenant) as (ctx, actor):
            return records.show(ctx, actor, type_name, record_id)

    def update(
        tenant: TenantRef,
        record_id: RowId,
        app: App,
        tok: Token,
        values: models.In,
        purpose: Purpose = None,
    ) -> Any:
        with acting(app, tok, tenant) as (ctx, actor):
            made = records.update(
                ctx,
                actor,
                type_name,
                record_id,
                values.model_dump(exclude_unset=True),
                purpose=purpose,
            )
        return {"record": made.record, "duplicates": made.duplicates}

    def delete(
        tenant: TenantRef, record_id: RowId, app: App, tok: Token, purpose: Purpose = None
    ) -> Any:
        with acting(app, tok, tenant) as (ctx, actor):
            records.delete_record(ctx, actor, type_name, record_id, purpose=purpose)
        return {"deleted": record_id}

    create.__annotations__["values"] = create_in  # the type's own body model
    update.__annotations__["values"] = update_in
    tags: list[str | Enum] = ["records"]
    made = {"record_id": "$response.body#/record/id"}
    router.add_api_route(
        path,
        create,
        methods=["POST"],
        name=f"create_{type_name}",
        tags=tags,
        status_code=201,
        response_model=saved,
        responses=errors(400, 409, 413)
        | links(201, **{f"{op}_{type_name}": made for op in ("show", "update", "delete")}),
        summary=f"Create a {type_name}",
    )
    router.add_api_route(
        f"{path}/{{record_id}}",
        show,
        methods=["GET"],
        name=f"show_{type_name}",
        tags=tags,
        response_model=record,
        responses=errors(),
        summary=f"One {type_name}",
    )
    router.add_api_route(
        f"{path}/{{record_id}}",
        update,
        methods=["PATCH"],
        name=f"update_{type_name}",
        tags=tags,
        response_model=saved,
        responses=errors(400, 409, 413),
        summary=f"Change a {type_name}",
    )
    router.add_api_route(
        f"{path}/{{record_id}}",
        delete,
        methods=["DELETE"],
        name=f"delete_{type_name}",
        tags=tags,
        response_model=models.DeletedOut,
        responses=errors(409),
        summary=f"Delete a {type_name}",
    )


def _children_route(type_name: str) -> None:
    record = models.RECORD_MODELS[type_name][2]

    def children(
        tenant: TenantRef,
        record_id: RowId,
        app: App,
        tok: Token,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        with acting(app, tok, tenant) as (ctx, actor):
            return records.list_children(ctx, actor, type_name, record_id, limit=limit)

    router.add_api_route(
        f"/tenants/{{tenant}}/contacts/{{record_id}}/{type_name}",
        children,
        methods=["GET"],
        name=f"list_contact_{type_name}",
        tags=["records"],
        response_model=list[record],  # type: ignore[valid-type]
        responses=errors(),
        summary=f"A contact's {type_name} records (newest first)",
    )


for _type in records.TYPES:
    _record_routes(_type)
for _type in CHILD_TYPES:
    _children_route(_type)


#: a day in a query: YYYY-MM-DD
Day = Annotated[
    str | None, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", json_schema_extra={"format": "date"})
]


class SearchParams(BaseModel):
    """Query parameters of customer search (as the CLI's search options)."""

    q: str = Field(default="", max_length=500)
    match: Literal["all", "any"] = "all"
    field: list[Annotated[str, Field(pattern=rf"^({'|'.join(search.TEXT_FIELDS)})=")]] = Field(
        default_factory=list, max_length=20, description="FIELD=TEXT, e.g. kana=タナカ"
    )
    checked: list[Annotated[int, Field(ge=1, le=48)]] = Field(default_factory=list, max_length=48)
    unchecked: list[Annotated[int, Field(ge=1, le=48)]] = Field(default_factory=list, max_length=48)
    classification: str | None = Field(default=None, max_length=63)
    updated_from: Day = None
    updated_to: Day = None
    activity_kind: str | None = Field(default=None, max_length=63)
    activity_text: str | None = Field(default=None, max_length=500)
    activity_from: Day = None
    activity_to: Day = None
    purchase_product: str | None = Field(default=None, max_length=200)
    purchase_from: Day = None
    purchase_to: Day = None
    purchase_shipped: bool | None = None
    purchase_paid: bool | None = None
    purchase_payment_method: str | None = Field(default=None, max_length=63)
    birthday_from: Day = None
    birthday_to: Day = None
    created_from: Day = Field(default=None, description="registered on or after")
    created_to: Day = None
    age_from: int | None = Field(default=None, ge=0, le=200)
    age_to: int | None = Field(default=None, ge=0, le=200)
    title: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=20)
    department: str | None = Field(default=None, max_length=200)
    sort: str = Field(
        default="id",
        pattern=rf"^-*({'|'.join(search.SORTS)})$",
        description="a column; prefix - for descending",
    )
    limit: int = Field(default=50, ge=0, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_ID)

    def query(self) -> search.Query:
        fields: dict[str, str] = {}
        for spec in self.field:
            name, sep, value = spec.partition("=")
            if not sep:
                raise ValidationFailed(f"field {spec!r}: write FIELD=TEXT")
            fields[name] = value
        boxes = {i: True for i in self.checked}
        for i in self.unchecked:
            if i in boxes:
                raise ValidationFailed(f"checkbox {i} cannot be both checked and unchecked")
            boxes[i] = False
        for name in ("title", "postal_code", "department"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        data = self.model_dump(
            exclude={"field", "checked", "unchecked", "title", "postal_code", "department"}
        )
        return search.Query(fields=fields, checkboxes=boxes, **data)


SEARCH_QUERY = query_model(SearchParams)
Search = Annotated[SearchParams, SEARCH_QUERY.depends]


@router.get(
    "/tenants/{tenant}/search",
    tags=["records"],
    response_model=models.SearchOut,
    responses=errors(),
    openapi_extra=SEARCH_QUERY.openapi,
)
def search_customers(tenant: TenantRef, params: Search, app: App, tok: Token) -> Any:
    """Partial-match customer search: the exact total and one page."""
    with acting(app, tok, tenant, read_only=True) as (ctx, actor):
        result = search.search(ctx, actor, params.query())  # after the session check
    return JSONBody({"total": result.total, "items": result.items})


#: a text query parameter holds no NUL character (no stored text can: PostgreSQL's cannot)
NO_NUL = r"^[^\x00]*$"


class CompanySearchParams(BaseModel):
    """Query parameters of company search (as the CLI's search-companies options)."""

    q: str = Field(
        default="",
        max_length=500,
        pattern=NO_NUL,
        description="partial match on name, kana, phone, address",
    )
    match: Literal["all", "any"] = "all"
    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    kana: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    address: str | None = Field(default=None, max_length=500, pattern=NO_NUL)
    phone: str | None = Field(
        default=None, max_length=40, pattern=NO_NUL, description="digits compared"
    )
    classification: str | None = Field(default=None, max_length=63, pattern=NO_NUL)
    sort: str = Field(default="id", max_length=20, pattern=rf"^-*({'|'.join(search.SORTS)})$")
    limit: int = Field(default=50, ge=0, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_ID)


COMPANY_SEARCH_QUERY = query_model(CompanySearchParams)


@router.get(
    "/tenants/{tenant}/companies/search",
    tags=["records"],
    response_model=models.CompanySearchOut,
    responses=errors(),
    openapi_extra=COMPANY_SEARCH_QUERY.openapi,
)
def search_companies(
    tenant: TenantRef,
    params: Annotated[CompanySearchParams, COMPANY_SEARCH_QUERY.depends],
    app: App,
    tok: Token,
) -> Any:
    """Partial-match company search (indexed): the exact total and one page."""
    with acting(app, tok, tenant, read_only=True) as (ctx, actor):
        result = company_search.search(
            ctx, actor, company_search.CompanyQuery(**params.model_dump())
        )
    return JSONBody({"total": result.total, "items": result.items})


@router.get(
    "/tenants/{tenant}/lookup", tags=["records"], response_model=models.CardOut, responses=errors()
)
async def lookup(
    tenant: TenantRef,
    app: App,
    tok: Token,
    phone: Annotated[
        str,
        Query(
            min_length=3,
            max_length=40,
            pattern=r"^[^0-9０-９]*([0-9０-９][^0-9０-９]*){3,}$",
            description="any formatting: 03-1234-5678, +81 3 1234 5678, full-width digits",
        ),
    ],
    call_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="the telephony side's call id: recorded and charged once",
        ),
    ] = None,
    codes: Annotated[
        bool, Query(description="picklist and classification codes rather than their labels")
    ] = False,
) -> Any:
    """The caller's card (CTI screen pop): profile, latest purchases and activities.

    The screen pop is the metered call: the call and its charge are recorded
    (once per ``call_id``), also for a caller no customer has (then 404)."""

    def pop() -> Any:
        with acting(app, tok, tenant) as (ctx, actor):
            return metering.screen_pop(ctx, actor, phone, call_ref=call_id, codes=codes)

    # One transaction: the session check, the lookup and the call record (with a logged
    # personal-information view) commit together before the card (or the "not found")
    # is sent -- no card without its call recorded, no call without its card or 404.
    # SQLite: in a worker thread, as it begins IMMEDIATE and may wait for the write lock
    # (the event loop never does). PostgreSQL: here on the event loop, as a worker-thread
    # hop costs more than the transaction's own work (handing round trips to worker
    # threads was measured slower: 369 against 1,013 lookups/s with two workers); the
    # only locks it can wait for are the tenant's call_bytes row and a call id's unique
    # entry, held by another call's write until its COMMIT, one round trip later.
    if app.engine.dialect.name == "sqlite":
        return JSONBody(await run_in_threadpool(pop))
    return JSONBody(pop())


class CallNoteIn(models.In):
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


@router.post(
    "/tenants/{tenant}/calls/{call_ref}/note",
    tags=["records"],
    response_model=CallOut,
    responses=errors(400, 409),
)
def call_note(
    tenant: TenantRef,
    call_ref: Annotated[str, Path(min_length=1, max_length=100)],
    body: CallNoteIn,
    app: App,
    tok: Token,
) -> Any:
    """Contact history typed during a call (by the call id given to the lookup): an
    activity of the customer it popped up. Refused for nuisance callers."""
    with acting(app, tok, tenant) as (ctx, actor):
        row = metering.add_contact_history(ctx, actor, None, body.note, call_ref=call_ref)
        return metering.call_summary(row)


@router.post(
    "/tenants/{tenant}/import/customers",
    tags=["csv"],
    response_model=models.ImportOut,
    responses=errors(400, 409, 413),
)
def import_customers(
    tenant: TenantRef,
    app: App,
    tok: Token,
    file: Annotated[UploadFile, File(description="CSV: UTF-8, UTF-8 with BOM or CP932")],
    dry_run: Annotated[bool, Form()] = False,
) -> Any:
    """Import customers, all rows or none (admins); ``dry_run`` checks every row."""
    raw = file.file  # spooled to disk by the server: read as it goes
    if raw.seek(0, 2) > MAX_CSV:
        raise ValidationFailed("the CSV file is larger than 256 MiB", hint="split it")
    raw.seek(0)
    with acting(app, tok, tenant) as (ctx, actor):
        report = csvio.import_customers(
            ctx, actor, raw, dry_run=dry_run, source=file.filename or "upload"
        )
    return {
        "rows": report.rows,
        "created": report.created,
        "encoding": report.encoding,
        "companies_created": report.companies_created,
        "dry_run": dry_run,
    }


class InquiryImportOut(BaseModel):
    rows: int = Field(description="data rows in the file (blank lines skipped)")
    created: int = Field(description="activities created (0 on a dry run)")
    encoding: str
    dry_run: bool


@router.post(
    "/tenants/{tenant}/import/inquiries",
    tags=["csv"],
    response_model=InquiryImportOut,
    responses=errors(400, 413),
)
def import_inquiries(
    tenant: TenantRef,
    app: App,
    tok: Token,
    file: Annotated[UploadFile, File(description="CSV: UTF-8, UTF-8 with BOM or CP932")],
    dry_run: Annotated[bool, Form()] = False,
) -> Any:
    """Import inquiries (contact history) of existing customers, all rows or none; each
    row is created like a single activity (rules apply)."""
    raw = file.file.read(MAX_CSV + 1)
    if len(raw) > MAX_CSV:
        raise ValidationFailed("the CSV file is larger than 256 MiB", hint="split it")
    with acting(app, tok, tenant) as (ctx, actor):
        report = inquiries.import_inquiries(
            ctx, actor, raw, dry_run=dry_run, source=file.filename or "upload"
        )
    return {
        "rows": report.rows,
        "created": report.created,
        "encoding": report.encoding,
        "dry_run": dry_run,
    }


@router.get(
    "/tenants/{tenant}/export/{kind}",
    tags=["csv"],
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"},
        **errors(),
    },
    openapi_extra=SEARCH_QUERY.openapi,
)
def export(
    tenant: TenantRef,
    kind: ExportKind,
    params: Search,
    app: App,
    tok: Token,
    encoding: Literal["utf-8-sig", "cp932"] = "utf-8-sig",
    columns: Annotated[
        str | None, Query(max_length=2000, description="comma-separated, in order")
    ] = None,
    codes: Annotated[
        bool, Query(description="picklist and classification codes rather than their labels")
    ] = False,
) -> Response:
    """CSV (Excel-friendly) of the customers a search finds, or of their history."""
    with acting(app, tok, tenant) as (ctx, actor):
        data = csvio.export(
            ctx,
            actor,
            kind,
            params.query(),
            columns=columns.split(",") if columns else None,
            encoding=encoding,
            codes=codes,
        )
    charset = "shift_jis" if encoding == "cp932" else "utf-8"
    return Response(
        data,
        media_type=f"text/csv; charset={charset}",
        headers={"Content-Disposition": f'attachment; filename="{actor.tenant_slug}-{kind}.csv"'},
    )


# --------------------------------------------------------------------------- billing


@router.get(
    "/tenants/{tenant}/billing", tags=["billing"], response_model=models.BillOut, responses=errors()
)
def billing_show(
    tenant: TenantRef,
    app: App,
    tok: Token,
    month: Annotated[str, Query(pattern=r"^(19|20)\d\d-(0[1-9]|1[0-2])$", description="YYYY-MM")],
) -> Any:
    """The monthly bill of the tenant's group, itemised (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        actors.require_admin(actor, "read the bill")
        group = _group(ctx, actors.get_tenant(ctx, actor.tenant_slug))
        if group is None:
            raise NotFound(
                f"tenant {actor.tenant_slug!r} is not in a tenant group",
                hint="bills are per tenant group",
            )
        return billing.group_bill(ctx, group.code, month).to_dict()


# --------------------------------------------------------------------------- HTTP plumbing


# --------------------------------------------------------------------------- users

Login = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$", description="the user's login id")
]


class UserOut(BaseModel):
    """A user of the tenant, as its admins see them."""

    login: str
    name: str
    role: str
    disabled: bool = Field(description="cannot log in to or act in the tenant")
    department: str | None = Field(description="a code of the user department master")
    member_since: str


class RoleIn(models.In):
    role: str = Field(min_length=1, max_length=63, description="a built-in or configured role")


class DepartmentIn(models.In):
    code: str | None = Field(
        default=None, max_length=63, description="a code of the master; null clears it"
    )


class DepartmentOut(BaseModel):
    code: str
    name: str


class NewDepartmentIn(models.In):
    code: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=200)


class RemovedOut(BaseModel):
    removed: str


class PasswordResetOut(BaseModel):
    login: str
    password: str = Field(description="the new password, shown only now")


@router.get(
    "/tenants/{tenant}/users", tags=["users"], response_model=list[UserOut], responses=errors(409)
)
def user_list(tenant: TenantRef, app: App, tok: Token) -> Any:
    """The tenant's users with role, disabled flag and department (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return users.list_users(ctx, actor)


@router.put(
    "/tenants/{tenant}/users/{login}/role",
    tags=["users"],
    response_model=UserOut,
    responses=errors(400, 409),
)
def user_role(tenant: TenantRef, login: Login, body: RoleIn, app: App, tok: Token) -> Any:
    """Give the user another role (admins; the tenant keeps an enabled admin)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return users.set_role(ctx, actor, login, body.role)


@router.post(
    "/tenants/{tenant}/users/{login}/disable",
    tags=["users"],
    response_model=UserOut,
    responses=errors(409),
)
def user_disable(tenant: TenantRef, login: Login, app: App, tok: Token) -> Any:
    """The user can no longer log in to or act in the tenant; their sessions end."""
    with acting(app, tok, tenant) as (ctx, actor):
        return users.disable(ctx, actor, login)


@router.post(
    "/tenants/{tenant}/users/{login}/enable",
    tags=["users"],
    response_model=UserOut,
    responses=errors(409),
)
def user_enable(tenant: TenantRef, login: Login, app: App, tok: Token) -> Any:
    """Enable a disabled user again (within the licensed user count)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return users.enable(ctx, actor, login)


@router.delete(
    "/tenants/{tenant}/users/{login}",
    tags=["users"],
    response_model=RemovedOut,
    responses=errors(409),
)
def user_remove(tenant: TenantRef, login: Login, app: App, tok: Token) -> Any:
    """Remove the user from the tenant (their login and other tenants stay)."""
    with acting(app, tok, tenant) as (ctx, actor):
        users.remove(ctx, actor, login)
    return {"removed": login}


@router.post(
    "/tenants/{tenant}/users/{login}/password-reset",
    tags=["users"],
    response_model=PasswordResetOut,
    responses=errors(409),
)
def user_password_reset(tenant: TenantRef, login: Login, app: App, tok: Token) -> Any:
    """A new random password for the user (shown once; their sessions end). Refused when
    the user also has tenants outside this tenant's group (the password is shared)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return {"login": login, "password": users.reset_password(ctx, actor, login)}


@router.put(
    "/tenants/{tenant}/users/{login}/department",
    tags=["users"],
    response_model=UserOut,
    responses=errors(400, 409),
)
def user_department(
    tenant: TenantRef, login: Login, body: DepartmentIn, app: App, tok: Token
) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return users.set_department(ctx, actor, login, body.code)


@router.get(
    "/tenants/{tenant}/user-departments",
    tags=["users"],
    response_model=list[DepartmentOut],
    responses=errors(409),
)
def department_list(tenant: TenantRef, app: App, tok: Token) -> Any:
    """The user department master (admins)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return users.departments(ctx, actor)


@router.post(
    "/tenants/{tenant}/user-departments",
    tags=["users"],
    status_code=201,
    response_model=DepartmentOut,
    responses=errors(400, 409),
)
def department_add(tenant: TenantRef, body: NewDepartmentIn, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return users.add_department(ctx, actor, body.code, body.name)


def document(app: FastAPI) -> None:
    """Serve /openapi.json with whole numbers as integers (generated once, as FastAPI does)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = whole_numbers(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def needs_session(request: Request) -> bool:
    """Whether the request was routed to an operation that takes a bearer token."""
    route = request.scope.get("route")
    return isinstance(route, APIRoute) and any(
        d.call is token for d in route.dependant.dependencies
    )


def session_refusal(request: Request) -> Unauthenticated | None:
    """Why a request to an operation that needs a session is unauthenticated, if it is.

    The error handlers ask before answering 4xx for invalid input, so that a request
    without a valid session gets 401 whatever it carries (the routes themselves check
    the session in their own transaction, on the success path, at no extra cost).
    """
    if not needs_session(request):
        return None
    try:
        with provisioner(request).transaction(read_only=True) as ctx:
            session_actor(ctx, token_from_header(request.headers.get("authorization")))
    except Unauthenticated as exc:
        return exc
    return None


def allowed_methods(request: Request) -> list[str]:
    """The methods the request's API path takes (for ``Allow``), whatever its method."""
    methods: set[str] = set()
    for route in router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE and isinstance(route, APIRoute):
            methods |= route.methods or set()
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"}) if methods else []


def options(request: Request) -> Response:
    """``OPTIONS``: the methods of the path in ``Allow``."""
    return Response(status_code=204, headers={"Allow": ", ".join(allowed_methods(request))})


# Routes are matched one by one in order: the call-centre paths (a lookup per incoming
# call) go first rather than after fifty others.
_FIRST = ("/api/tenants/{tenant}/lookup", "/api/tenants/{tenant}/search")
router.routes.sort(key=lambda r: getattr(r, "path", "") not in _FIRST)
for _path in dict.fromkeys(getattr(r, "path", "") for r in list(router.routes)):
    router.add_api_route(
        _path.removeprefix(router.prefix), options, methods=["OPTIONS"], include_in_schema=False
    )
