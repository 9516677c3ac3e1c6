"""The JSON API of automation: workflows, their log and dry runs, notifications, and
blueprint transitions (``/api/tenants/{tenant}/...``), over the same services as the
CLI (:mod:`provisioner.services.workflows`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from provisioner.services import workflows
from provisioner.web.api import App, RecordTypeName, TenantRef, Token, operation_id
from provisioner.web.common import RowId
from provisioner.web.models import In
from provisioner.web.responses import errors
from provisioner.web.security import acting

router = APIRouter(prefix="/api", generate_unique_id_function=operation_id)
WorkflowCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class WorkflowOut(BaseModel):
    code: str
    label: str
    object: str
    trigger: str
    state: Literal["active", "paused"]
    last_fired: str | None
    firings: int


class StateIn(In):
    state: Literal["active", "paused"]


class StateOut(BaseModel):
    workflow: str
    state: Literal["active", "paused"]
    version: int | None = Field(description="the new configuration version; null: no change")


class DryRunOut(BaseModel):
    workflow: str
    object: str
    trigger: str
    state: str
    examined: int
    matched: int
    changes: dict[str, int]
    effects: dict[str, int]
    errors: dict[str, int]
    examples: list[dict[str, Any]]


class ExecutionOut(BaseModel):
    at: str
    workflow: str
    config_version: int
    record_type: str
    record_id: int
    trigger: str
    depth: int
    changes: dict[str, Any]
    error: str


class NotificationOut(BaseModel):
    id: int
    at: str
    workflow: str
    record_type: str
    record_id: int
    message: str
    read: bool


class ReadIn(In):
    ids: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, max_length=1000, description="null: every notification"
    )


class ReadOut(BaseModel):
    marked: int


class TransitionIn(In):
    to: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="the state to move to")
    blueprint: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,62}$")
    purpose: str | None = Field(default=None, max_length=500)


class TransitionOut(BaseModel):
    record_type: str
    record_id: int
    blueprint: str
    transition: str
    from_: str = Field(alias="from")
    to: str


class BlueprintStatusOut(BaseModel):
    blueprint: str
    label: str
    state: str
    state_label: str
    transitions: list[dict[str, str]]


@router.get(
    "/tenants/{tenant}/workflows",
    tags=["workflows"],
    response_model=list[WorkflowOut],
    responses=errors(),
)
def workflow_list(tenant: TenantRef, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return workflows.list_workflows(ctx, actor)


@router.put(
    "/tenants/{tenant}/workflows/{code}/state",
    tags=["workflows"],
    response_model=StateOut,
    responses=errors(400),
)
def workflow_state(
    tenant: TenantRef, code: WorkflowCode, body: StateIn, app: App, tok: Token
) -> Any:
    """Activate or pause a workflow (admins; a new configuration version)."""
    with acting(app, tok, tenant) as (ctx, actor):
        version = workflows.set_active(ctx, actor, code, body.state == "active")
    return {"workflow": code, "state": body.state, "version": version}


@router.post(
    "/tenants/{tenant}/workflows/{code}/dry-run",
    tags=["workflows"],
    response_model=DryRunOut,
    responses=errors(),
)
def workflow_dry_run(
    tenant: TenantRef,
    code: WorkflowCode,
    app: App,
    tok: Token,
    sample: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
) -> Any:
    """How many existing records the rule matches and what it would change (no writes)."""
    with acting(app, tok, tenant) as (ctx, actor):
        return workflows.dry_run(ctx, actor, code, sample=sample).to_dict()


@router.get(
    "/tenants/{tenant}/workflow-log",
    tags=["workflows"],
    response_model=list[ExecutionOut],
    responses=errors(),
)
def workflow_log(
    tenant: TenantRef,
    app: App,
    tok: Token,
    record_type: RecordTypeName | None = None,
    record_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    workflow: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return workflows.execution_log(
            ctx, actor, record_type=record_type, record_id=record_id, workflow=workflow, limit=limit
        )


@router.get(
    "/tenants/{tenant}/notifications",
    tags=["notifications"],
    response_model=list[NotificationOut],
    responses=errors(),
)
def notification_list(
    tenant: TenantRef,
    app: App,
    tok: Token,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return workflows.notifications(ctx, actor, unread_only=unread, limit=limit)


@router.post(
    "/tenants/{tenant}/notifications/read",
    tags=["notifications"],
    response_model=ReadOut,
    responses=errors(400),
)
def notification_read(tenant: TenantRef, body: ReadIn, app: App, tok: Token) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return {"marked": workflows.mark_read(ctx, actor, body.ids)}


@router.get(
    "/tenants/{tenant}/records/{type_name}/{record_id}/blueprints",
    tags=["records"],
    response_model=list[BlueprintStatusOut],
    responses=errors(),
)
def record_blueprints(
    tenant: TenantRef, type_name: RecordTypeName, record_id: RowId, app: App, tok: Token
) -> Any:
    with acting(app, tok, tenant) as (ctx, actor):
        return workflows.blueprint_status(ctx, actor, type_name, record_id)


@router.post(
    "/tenants/{tenant}/records/{type_name}/{record_id}/transition",
    tags=["records"],
    response_model=TransitionOut,
    responses=errors(400),
)
def record_transition(
    tenant: TenantRef,
    type_name: RecordTypeName,
    record_id: RowId,
    body: TransitionIn,
    app: App,
    tok: Token,
) -> Any:
    """Move the record along a transition of its blueprint."""
    with acting(app, tok, tenant) as (ctx, actor):
        return workflows.transition(
            ctx,
            actor,
            type_name,
            record_id,
            body.to,
            blueprint=body.blueprint,
            purpose=body.purpose,
        )
