"""The JSON bodies of the API, as pydantic models: what ``/openapi.json`` documents.

Request models forbid unknown fields; response models describe what the routes
send (the routes build them from :mod:`provisioner.web.present` shapes). A record
type's request and answer models are made from :data:`records.TYPES`, so that a
field added there is documented without another edit.

The one error body is in :mod:`provisioner.web.responses` (``ErrorBody``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from provisioner.config.document import ConfigSections
from provisioner.services.crm import records

MAX_ID = 2**31 - 1
#: the bound of 64-bit record numbers in the schema: the largest whole number a JSON
#: number (a double) carries exactly
MAX_BIG = 2**53
#: record fields stored in 32-bit columns (the others are 64-bit)
_INT32_FIELDS = {"employees", "quantity"}


def _whole(value: Any) -> Any:
    """JSON's whole numbers written with a fraction (``3.0``) are integers (JSON Schema)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


#: an integer of a request body: no text, no true/false; 3.0 is 3
Whole = Annotated[int, BeforeValidator(_whole)]


class In(BaseModel):
    """A request body: unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    """A response body."""


# ------------------------------------------------------------------ session and tenants


class LoginIn(In):
    login: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class SwitchIn(In):
    tenant: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="number in your list or slug",
    )


class TenantChoice(Out):
    number: int = Field(description="the tenant's number in your list (stable order)")
    slug: str
    name: str
    role: str
    group: str | None


class LoginOut(Out):
    token: str = Field(description="send as 'Authorization: Bearer TOKEN'")
    login: str
    selected: str = Field(description="the selected tenant's slug")
    expires_at: str = Field(description="UTC instant, e.g. 2026-11-24T09:00:00Z")
    tenants: list[TenantChoice]


class LogoutOut(Out):
    logged_out: bool


class SessionOut(Out):
    login: str
    selected: str
    role: str
    tenants: list[TenantChoice]


class SwitchOut(Out):
    selected: str
    role: str


class TenantOut(Out):
    slug: str
    name: str
    plan: str
    sandbox: bool
    integrations: bool
    status: str
    config_version: int | None
    role: str
    group: str | None


# ------------------------------------------------------------------ configuration


class ConfigOut(Out):
    version: int
    digest: str | None = Field(default=None, description="only for the current version")
    document: dict[str, Any] = Field(description="the configuration document")


class ConfigSetOut(Out):
    version: int | None
    changed: bool


class VersionOut(Out):
    version: int
    digest: str
    created_at: str | None
    created_by: str | None
    origin: str
    current: bool


class SectionCounts(Out):
    added: int
    changed: int
    removed: int


class Change(Out):
    section: str
    key: str
    op: Literal["added", "changed", "removed"]
    before: Any
    after: Any
    details: list[Any]


class DiffOut(Out):
    model_config = ConfigDict(populate_by_name=True)

    from_version: int = Field(alias="from")
    to_version: int = Field(alias="to")
    summary: dict[str, SectionCounts]
    changes: list[Change]


class RollbackIn(In):
    to: Whole = Field(ge=1, le=MAX_ID, description="the version to restore")


class RollbackOut(Out):
    version: int | None
    restored: int
    changed: bool


# ------------------------------------------------------------------ copy keys and transfers


class KeyOut(Out):
    id: int
    selector: str
    state: str
    created_at: str | None
    created_by: str
    expires_at: str | None
    used_by_transfer: int | None
    failed_attempts: int


class NewKeyOut(Out):
    key: str = Field(description="the copy key: shown in this answer only")
    id: int
    selector: str
    expires_at: str | None


#: the sections of a configuration document (what a copy may be limited to: ``only``)
SECTIONS = tuple(name for name in ConfigSections.model_fields if name != "schema_version")
if TYPE_CHECKING:
    Section = str
else:
    Section = Literal[SECTIONS]


class SendIn(In):
    key: str = Field(min_length=1, max_length=200, description="the copy key you were given")
    only: list[Section] | None = Field(
        default=None, min_length=1, max_length=20, description="configuration sections to send"
    )


class ApproveIn(In):
    mode: Literal["replace", "merge", "upgrade"] | None = Field(
        default=None,
        description="default: upgrade when the tenant has a base from the "
        "transfer's source, else replace",
    )
    only: list[Section] | None = Field(default=None, min_length=1, max_length=20)
    remaps: dict[str, str] = Field(
        default_factory=dict, description='{"PICKLIST.VALUE": "NEWVALUE"}'
    )
    force: bool = False
    keep: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="upgrade: conflict addresses resolved as ours",
    )
    take: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="upgrade: conflict addresses resolved as theirs",
    )
    prefer: Literal["ours", "theirs"] | None = None


class RejectIn(In):
    reason: str | None = Field(default=None, max_length=2000)


class TransferOut(Out):
    id: int
    status: Literal["pending", "applied", "rejected", "rolled_back"]
    source_tenant: str
    source_name: str
    source_version: int
    bundle_id: str
    bundle_digest: str
    signer_key_id: str
    base_version: int | None
    received_at: str | None
    received_by: str
    decided_by: str | None
    applied_version: int | None
    summary: dict[str, Any]


class SentOut(TransferOut):
    target: str | None = Field(description="the target tenant's slug")


class PlanOut(TransferOut):
    plan: dict[str, Any] = Field(
        description="per section: added, changed, removed; the "
        "impact on the records (impact.items) and, per incoming "
        "new or changed workflow, how many records its conditions "
        "match now (impact.workflows)"
    )


class DecisionOut(TransferOut):
    outcome: str
    version: int | None
    message: str | None
    remapped: Any = None
    forced: Any = None


class TransferRollbackOut(Out):
    transfer: int
    version: int | None


# ------------------------------------------------------------------ records

_Text = Annotated[str | None, Field(max_length=200)]
_LongText = Annotated[str | None, Field(max_length=20000)]
_Date = Annotated[
    str, Field(pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$", description="YYYY-MM-DD, or empty")
]
_Email = Annotated[str | None, Field(max_length=200, pattern=r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$")]
#: a phone number in any format, with at most 20 digits (full-width ones count)
_Phone = Annotated[
    str | None, Field(max_length=200, pattern=r"^[^0-9０-９]*([0-9０-９][^0-9０-９]*){0,20}$")
]
_Checkboxes = (
    list[Annotated[Whole, Field(ge=1, le=48)]]
    | dict[Annotated[str, Field(pattern=r"^[0-9]{1,2}$")], bool]
)
#: a required value: not empty, not only spaces
_REQUIRED = {
    "str": Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")],
    "text": Annotated[str, Field(min_length=1, max_length=20000, pattern=r"\S")],
    "ref": Annotated[Whole, Field(ge=1, le=2**53)],
    "date": Annotated[
        str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="YYYY-MM-DD")
    ],
}


def _field_in(name: str, kind: str) -> Any:
    if kind == "str" and name == "email":
        return _Email
    if kind == "str" and name in ("phone", "mobile"):
        return _Phone
    if kind == "str":
        return _Text
    if kind == "text":
        return _LongText
    if kind == "int":
        bound = MAX_ID if name in _INT32_FIELDS else MAX_BIG
        return Annotated[Whole | None, Field(ge=-bound, le=bound)]
    if kind == "ref":
        return Annotated[Whole | None, Field(ge=1, le=MAX_BIG)]
    if kind == "bool":
        return bool
    if kind == "date":
        return _Date
    if kind == "checkboxes":
        return Annotated[
            _Checkboxes,
            Field(
                description='[1, 5] (exactly these checked) or {"1": true, "5": false} '
                "(changes); enabled checkboxes only"
            ),
        ]
    if kind == "codes":
        return Annotated[
            list[Annotated[str, Field(max_length=63)]],
            Field(max_length=100, description="classification codes of the configuration"),
        ]
    if kind == "json":
        return Annotated[dict[str, Any], Field(description="the custom database's fields")]
    raise AssertionError(f"no schema for field kind {kind!r}")


def _field_out(kind: str) -> Any:
    return {
        "str": str | None,
        "text": str | None,
        "int": int | None,
        "ref": int | None,
        "bool": bool | None,
        "date": str | None,
        "checkboxes": list[int],
        "codes": list[str],
        "json": Any,
    }[kind]


def _title(type_name: str) -> str:
    return "".join(part.title() for part in type_name.split("_"))


def _record_models(rt: records.RecordType) -> tuple[type[In], type[In], type[Out]]:
    create: dict[str, Any] = {}
    update: dict[str, Any] = {}
    out: dict[str, Any] = {"id": (int, ...)}
    for name, kind in rt.fields.items():
        typ = _field_in(name, kind)
        required = name in rt.required
        if required and kind in _REQUIRED:  # present and not empty (on update too, if given)
            typ = _REQUIRED[kind]
        create[name] = (typ, ... if required else None)
        update[name] = (typ, None)
        out[name] = (_field_out(kind), None)
    if rt.name == "secret_note":
        out["author_id"] = (int | None, None)
    if rt.name == "contact":
        out["company_name"] = (str | None, None)
        out["careers"] = (list[dict[str, Any]] | None, None)
        out["jobs"] = (list[_JOB[2]] | None, None)  # type: ignore[valid-type]
    out["updated_at"] = (str | None, None)
    out["updated_by"] = (str | None, None)
    title = _title(rt.name)
    return (
        create_model(f"{title}Create", __base__=In, **create),
        create_model(f"{title}Update", __base__=In, **update),
        create_model(title, __base__=Out, **out),
    )


#: record type -> (create body, update body, record)
_JOB = _record_models(records.TYPES["job"])  # (a contact shows its jobs)
RECORD_MODELS = {
    name: _JOB if name == "job" else _record_models(rt) for name, rt in records.TYPES.items()
}


class Duplicate(Out):
    id: int
    name: str


def saved_model(type_name: str) -> type[Out]:
    record = RECORD_MODELS[type_name][2]
    return create_model(
        f"{_title(type_name)}Saved",
        __base__=Out,
        record=(record, ...),
        duplicates=(
            list[Duplicate],
            Field(default_factory=list, description="possible duplicates (same normalised name)"),
        ),
    )


class DeletedOut(Out):
    deleted: int


class SearchOut(Out):
    total: int = Field(description="the exact number of matches")
    items: list[dict[str, Any]] = Field(description="one page, in sort order")


class CompanyItem(Out):
    id: int
    name: str
    kana: str
    phone: str
    postal_code: str
    address: str
    classifications: list[str] = Field(description="customer classification codes")
    updated_at: str | None


class CompanySearchOut(Out):
    total: int = Field(description="the exact number of matches")
    items: list[CompanyItem] = Field(description="one page, in sort order")


class CardOut(Out):
    contact: dict[str, Any] | None
    other_matches: list[int]
    activities: list[dict[str, Any]]
    purchases: list[dict[str, Any]]


class ImportOut(Out):
    rows: int
    created: int
    encoding: str
    companies_created: int
    dry_run: bool


class BillLine(Out):
    item: str
    detail: str
    quantity: int
    unit_price: int
    amount: int


class BillOut(Out):
    group: str
    month: str
    currency: Literal["JPY"]
    total: int
    lines: list[BillLine]
