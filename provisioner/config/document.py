"""The configuration document: everything about a tenant that travels in a bundle.

A document is an immutable pydantic model with one field per *section*.
Items carry stable codes (``activity_kind``, ``vip``), never database ids, so
a bundle maps cleanly onto another tenant and a label can be renamed without
touching data.

Two layers of validity, on purpose:

* **structure** -- types, required fields, lengths, enumerations. Expressed
  identically by these models and by the JSON Schema files in
  ``config_schemas/`` (generated from them; a property test proves the two
  agree).
* **references** -- unique codes and indexes, a memo field pointing at a
  picklist that exists, a workflow action naming a real checkbox. These need
  the whole document and live in :mod:`provisioner.config.references`.

    >>> from provisioner.config.defaults import default_document
    >>> doc = default_document()
    >>> len(doc.checkboxes), len(doc.memo_fields)
    (48, 10)
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

SCHEMA_VERSION = 1

Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="stable code")]
Label = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=2000)]
FieldPath = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,2}$",
        description="object.field, e.g. contact.memo_3 or contact.db.visits.count",
    ),
]
BuiltinRole = Literal["admin", "general", "general_no_export", "general_no_print", "read_only"]
BUILTIN_ROLES: tuple[str, ...] = (
    "admin",
    "general",
    "general_no_export",
    "general_no_print",
    "read_only",
)
RecordObject = Literal["company", "department", "contact", "activity", "purchase"]

#: The standard fields whose display labels a tenant may change.
STANDARD_FIELDS: dict[str, tuple[str, ...]] = {
    "company": (
        "name",
        "kana",
        "representative",
        "industry",
        "capital",
        "employees",
        "established",
        "postal_code",
        "address",
        "phone",
        "fax",
        "email",
        "url",
        "note",
    ),
    "department": ("name", "postal_code", "address", "phone", "fax", "email", "note"),
    "contact": (
        "name",
        "kana",
        "title",
        "email",
        "phone",
        "mobile",
        "fax",
        "postal_code",
        "address",
        "birthday",
        "sex",
        "note",
    ),
    "activity": (
        "date",
        "kind",
        "content",
        "detail",
        "response",
        "store",
        "staff",
        "memo",
        *(f"content_{i}" for i in range(1, 11)),
    ),
    "purchase": (
        "date",
        "product_class",
        "product_code",
        "product_name",
        "quantity",
        "unit_price",
        "amount",
        "payment_method",
        "shipped",
        "paid",
        "media",
        "memo",
    ),
}
LABEL_KEYS: tuple[str, ...] = tuple(
    f"{obj}.{field}" for obj, fields in STANDARD_FIELDS.items() for field in fields
)
LabelKey = Literal[LABEL_KEYS]  # type: ignore[valid-type]

MEMO_COUNT = 10
CHECKBOX_COUNT = 48


class _Model(BaseModel):
    """Strict, frozen, closed: unknown fields are an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class MemoField(_Model):
    index: int = Field(ge=1, le=MEMO_COUNT)
    label: Label
    type: Literal["text", "picklist"] = "text"
    picklist: Code | None = Field(
        default=None, description="code of the picklist offered when type is picklist"
    )


class Checkbox(_Model):
    index: int = Field(ge=1, le=CHECKBOX_COUNT)
    label: Label
    enabled: bool = True


class PicklistValue(_Model):
    code: Code
    label: Label
    active: bool = True


class Picklist(_Model):
    code: Code
    label: Label
    values: list[PicklistValue] = Field(default_factory=list, max_length=1000)


class ClassificationNode(_Model):
    code: Code
    label: Label
    parent: Code | None = None


class Classifications(_Model):
    customer: list[ClassificationNode] = Field(default_factory=list, max_length=5000)
    product: list[ClassificationNode] = Field(default_factory=list, max_length=5000)


class FieldOption(_Model):
    code: Code
    label: Label


class CustomField(_Model):
    key: Code
    label: Label
    type: Literal["text", "long_text", "integer", "date", "boolean", "choice", "email", "url"]
    required: bool = False
    options: list[FieldOption] = Field(default_factory=list, max_length=500)


class CustomDatabase(_Model):
    code: Code
    label: Label
    attached_to: Literal["company", "department", "contact"]
    fields: list[CustomField] = Field(default_factory=list, max_length=200)


def _drop_unset(handler: Any, value: Any, optional: tuple[str, ...]) -> dict[str, Any]:
    """Serialise without the optional keys left unset (None): documents written before
    those keys existed keep their bytes, digests and diffs."""
    data: dict[str, Any] = handler(value)
    for key in optional:
        if data.get(key) is None:
            data.pop(key, None)
    return data


class Trigger(_Model):
    """When a workflow runs: on a record's creation, on any update, when one field's value
    actually changes, or on a date (``days`` before (negative) or after a date field of
    the record, every year when ``yearly``: a birthday)."""

    event: Literal["created", "updated", "field_changed", "date"]
    field: FieldPath | None = Field(
        default=None, description="required for field_changed and date (a date field)"
    )
    days: int | None = Field(
        default=None,
        ge=-366,
        le=366,
        description="date trigger: days after the date (negative: before); default 0",
    )
    yearly: bool | None = Field(
        default=None, description="date trigger: every year on the date's month and day"
    )
    #: keys left out of the data when unset (see :func:`_drop_unset`; config/fast.py too)
    omit_unset: ClassVar[tuple[str, ...]] = ("days", "yearly")

    @model_serializer(mode="wrap")
    def _serialise(self, handler: Any) -> dict[str, Any]:
        return _drop_unset(handler, self, self.omit_unset)


#: Integers that survive every JSON implementation (I-JSON, RFC 8785): |n| < 2**53.
SafeInt = Annotated[int, Field(ge=-(2**53) + 1, le=2**53 - 1)]


class Condition(_Model):
    field: FieldPath
    op: Literal["eq", "ne", "contains", "empty", "not_empty", "gt", "lt"]
    value: str | SafeInt | bool | None = None


class Conditions(_Model):
    match: Literal["all", "any"] = "all"
    rules: list[Condition] = Field(default_factory=list, max_length=50)


class SetField(_Model):
    type: Literal["set_field"]
    field: FieldPath
    value: str | SafeInt | bool | None


class SetCheckbox(_Model):
    type: Literal["set_checkbox"]
    index: int = Field(ge=1, le=CHECKBOX_COUNT)
    checked: bool = True


class AddClassification(_Model):
    type: Literal["add_classification"]
    classification: Code


class CreateActivity(_Model):
    type: Literal["create_activity"]
    kind: Code = Field(description="a value of the activity_kind picklist")
    content: Text
    due_in_days: int | None = Field(
        default=None,
        ge=0,
        le=366,
        description="a follow-up task: the activity is dated this many days after the firing",
    )
    omit_unset: ClassVar[tuple[str, ...]] = ("due_in_days",)

    @model_serializer(mode="wrap")
    def _serialise(self, handler: Any) -> dict[str, Any]:
        return _drop_unset(handler, self, self.omit_unset)


class Notify(_Model):
    type: Literal["notify"]
    role: Code
    message: Text


Action = Annotated[
    SetField | SetCheckbox | AddClassification | CreateActivity | Notify,
    Field(discriminator="type"),
]


class Workflow(_Model):
    code: Code
    label: Label
    active: bool = True
    object: RecordObject
    trigger: Trigger
    conditions: Conditions = Field(default_factory=Conditions)
    actions: list[Action] = Field(min_length=1, max_length=50)


class BlueprintState(_Model):
    code: Code = Field(description="a value code of the blueprint's picklist")
    label: Label


class Transition(_Model):
    code: Code
    label: Label
    from_state: Code
    to_state: Code
    allowed_roles: list[Code] = Field(default_factory=list, max_length=50)
    required_fields: list[FieldPath] = Field(default_factory=list, max_length=50)


class Blueprint(_Model):
    code: Code
    label: Label
    object: RecordObject
    picklist: Code = Field(description="the picklist whose values are the states")
    initial_state: Code
    states: list[BlueprintState] = Field(min_length=1, max_length=200)
    transitions: list[Transition] = Field(default_factory=list, max_length=1000)


Permission = Literal[
    "records.read",
    "records.write",
    "records.delete",
    "export",
    "print",
    "import",
    "bulk_update",
    "bulk_delete",
    "settings",
    "users",
]


class Role(_Model):
    code: Code
    label: Label
    permissions: list[Permission] = Field(default_factory=list)


class InputRules(_Model):
    company_suffix: Literal["as_entered", "kabushiki_kaisha", "kakko_kabu", "maru_kabu"] = Field(
        default="as_entered",
        description="as_entered | kabushiki_kaisha (株式会社) | kakko_kabu ((株)) | maru_kabu (㈱)",
    )
    phone_format: Literal["as_entered", "hyphen", "paren", "digits"] = Field(
        default="as_entered",
        description="hyphen (03-1234-5678) | paren ((03)1234-5678) | digits (0312345678)",
    )
    normalize_width: bool = Field(
        default=True, description="NFKC: full-width digits and Latin letters become half-width"
    )
    duplicate_check_company: bool = True
    duplicate_check_contact: bool = True
    postal_code_check: bool = Field(
        default=False,
        description="an unknown Japanese postal code is a validation error "
        "(a known one fills an empty address either way)",
    )


class LinkButton(_Model):
    code: Code
    label: Label
    object: Literal["company", "department", "contact"]
    url_template: Annotated[str, Field(pattern=r"^https://", max_length=2000)]


class ExternalSystem(_Model):
    code: Code
    label: Label


class Settings(_Model):
    recent_customers: int = Field(default=10, ge=0, le=100)
    personal_info_logging: bool = Field(
        default=False, description="log every view of a contact's personal information"
    )
    news: Text = ""
    link_buttons: list[LinkButton] = Field(default_factory=list, max_length=100)
    external_systems: list[ExternalSystem] = Field(default_factory=list, max_length=100)


#: Section name -> model (or type) of the section, in document order.
SECTION_NAMES: tuple[str, ...] = (
    "mode",
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
)


class ConfigDocument(_Model):
    """A tenant's whole configuration. Every section is present."""

    schema_version: Literal[1] = 1

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_is_not_a_bool(cls, value: object) -> object:
        # Literal[1] alone accepts True (True == 1), even in strict mode
        if isinstance(value, bool):
            raise ValueError("schema_version must be the integer 1")
        return value

    mode: Literal["corporate", "individual"]
    labels: dict[LabelKey, Label]
    memo_fields: list[MemoField] = Field(min_length=MEMO_COUNT, max_length=MEMO_COUNT)
    checkboxes: list[Checkbox] = Field(min_length=CHECKBOX_COUNT, max_length=CHECKBOX_COUNT)
    picklists: list[Picklist] = Field(max_length=2000)
    classifications: Classifications
    custom_databases: list[CustomDatabase] = Field(max_length=500)
    workflows: list[Workflow] = Field(max_length=5000)
    blueprints: list[Blueprint] = Field(max_length=500)
    roles: list[Role] = Field(max_length=200)
    input_rules: InputRules
    settings: Settings

    def to_data(self) -> dict[str, Any]:
        """Plain JSON-ready data (what is hashed, stored and signed)."""
        return self.model_dump(mode="json")


class ConfigSections(_Model):
    """Some sections of a document: a bundle's or a ``config set`` file's content."""

    schema_version: Literal[1] = 1

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_is_not_a_bool(cls, value: object) -> object:
        # Literal[1] alone accepts True (True == 1), even in strict mode
        if isinstance(value, bool):
            raise ValueError("schema_version must be the integer 1")
        return value

    mode: Literal["corporate", "individual"] | None = None
    labels: dict[LabelKey, Label] | None = None
    memo_fields: list[MemoField] | None = Field(
        default=None, min_length=MEMO_COUNT, max_length=MEMO_COUNT
    )
    checkboxes: list[Checkbox] | None = Field(
        default=None, min_length=CHECKBOX_COUNT, max_length=CHECKBOX_COUNT
    )
    picklists: list[Picklist] | None = Field(default=None, max_length=2000)
    classifications: Classifications | None = None
    custom_databases: list[CustomDatabase] | None = Field(default=None, max_length=500)
    workflows: list[Workflow] | None = Field(default=None, max_length=5000)
    blueprints: list[Blueprint] | None = Field(default=None, max_length=500)
    roles: list[Role] | None = Field(default=None, max_length=200)
    input_rules: InputRules | None = None
    settings: Settings | None = None

    def present(self) -> tuple[str, ...]:
        """Names of the sections this object carries, in document order."""
        return tuple(name for name in SECTION_NAMES if getattr(self, name) is not None)

    def to_data(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        return {k: v for k, v in data.items() if v is not None}
