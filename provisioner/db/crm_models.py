"""Typed ORM models of the CRM data (migration ``0002_crm``): the records a configuration shapes.

Every table carries ``tenant_id`` (listed in :data:`CRM_TENANT_TABLES`; on PostgreSQL
row-level security is enabled and forced on each, keyed on the session setting
``provisioner.tenant_id``). Memo 1..10 are real columns and checkboxes 1..48 one
48-bit integer (bit ``i - 1`` is checkbox ``i``), so impact analysis and search
are single-table scans. Phones are also kept as digits only (``phone_digits``),
indexed per tenant, for the CTI screen pop.

    >>> CrmContact.__tablename__
    'crm_contacts'
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db.base import Base

_ID = BigInteger().with_variant(Integer, "sqlite")


def _ref(table: str) -> Any:
    return ForeignKey(f"{table}.id", ondelete="CASCADE")


class _Stamped:
    """Columns every CRM record has."""

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(100))


class CrmCompany(_Stamped, Base):
    __tablename__ = "crm_companies"
    __table_args__ = (Index("ix_crm_companies_tenant_name_norm", "tenant_id", "name_norm"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_norm: Mapped[str] = mapped_column(String(200))
    kana: Mapped[str] = mapped_column(String(200), default="")
    representative: Mapped[str] = mapped_column(String(200), default="")
    industry: Mapped[str] = mapped_column(String(200), default="")
    capital: Mapped[int | None] = mapped_column(BigInteger)
    employees: Mapped[int | None] = mapped_column(Integer)
    established: Mapped[str] = mapped_column(String(10), default="")
    postal_code: Mapped[str] = mapped_column(String(10), default="")
    address: Mapped[str] = mapped_column(String(500), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    phone_digits: Mapped[str] = mapped_column(String(20), default="")
    fax: Mapped[str] = mapped_column(String(40), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    url: Mapped[str] = mapped_column(String(500), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    #: customer classification codes as ",a,b," (LIKE '%,a,%' finds an assignment)
    classifications: Mapped[str] = mapped_column(String(2000), default="")
    #: normalised name, kana, phone and address (company search; migration 0016_crm_jobs)
    search_text: Mapped[str] = mapped_column(
        Text, default="", server_default="", active_history=True
    )


class CrmCompanyGram(Base):
    """One gram of a company's search text (migration 0016_crm_jobs): every 1-, 2- and
    3-character substring of each field, one row per company holding it (see
    :mod:`provisioner.services.crm.company_search`)."""

    __tablename__ = "crm_company_grams"
    __table_args__ = (Index("ix_crm_company_grams_tenant_company", "tenant_id", "company_id"),)

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    gram: Mapped[str] = mapped_column(
        String(3).with_variant(String(3, collation="C"), "postgresql"), primary_key=True
    )
    company_id: Mapped[int] = mapped_column(_ID, primary_key=True)


class CrmDepartment(_Stamped, Base):
    __tablename__ = "crm_departments"
    __table_args__ = (Index("ix_crm_departments_tenant_company", "tenant_id", "company_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    company_id: Mapped[int] = mapped_column(_ID, _ref("crm_companies"))
    name: Mapped[str] = mapped_column(String(200))
    postal_code: Mapped[str] = mapped_column(String(10), default="")
    address: Mapped[str] = mapped_column(String(500), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    phone_digits: Mapped[str] = mapped_column(String(20), default="")
    fax: Mapped[str] = mapped_column(String(40), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    note: Mapped[str] = mapped_column(Text, default="")


class CrmContact(_Stamped, Base):
    __tablename__ = "crm_contacts"
    __table_args__ = (
        Index("ix_crm_contacts_tenant_phone", "tenant_id", "phone_digits"),
        Index("ix_crm_contacts_tenant_mobile", "tenant_id", "mobile_digits"),
        Index("ix_crm_contacts_tenant_name_norm", "tenant_id", "name_norm"),
        Index("ix_crm_contacts_tenant_company", "tenant_id", "company_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    company_id: Mapped[int | None] = mapped_column(
        _ID, ForeignKey("crm_companies.id", ondelete="SET NULL")
    )
    department_id: Mapped[int | None] = mapped_column(
        _ID, ForeignKey("crm_departments.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(200))
    name_norm: Mapped[str] = mapped_column(String(200))
    kana: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    phone_digits: Mapped[str] = mapped_column(String(20), default="")
    mobile: Mapped[str] = mapped_column(String(40), default="")
    mobile_digits: Mapped[str] = mapped_column(String(20), default="")
    fax: Mapped[str] = mapped_column(String(40), default="")
    postal_code: Mapped[str] = mapped_column(String(10), default="")
    address: Mapped[str] = mapped_column(String(500), default="")
    birthday: Mapped[str] = mapped_column(String(10), default="")
    sex: Mapped[str] = mapped_column(String(63), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    memo_1: Mapped[str] = mapped_column(Text, default="")
    memo_2: Mapped[str] = mapped_column(Text, default="")
    memo_3: Mapped[str] = mapped_column(Text, default="")
    memo_4: Mapped[str] = mapped_column(Text, default="")
    memo_5: Mapped[str] = mapped_column(Text, default="")
    memo_6: Mapped[str] = mapped_column(Text, default="")
    memo_7: Mapped[str] = mapped_column(Text, default="")
    memo_8: Mapped[str] = mapped_column(Text, default="")
    memo_9: Mapped[str] = mapped_column(Text, default="")
    memo_10: Mapped[str] = mapped_column(Text, default="")
    #: checkboxes 1..48: bit i-1 set means checkbox i is checked
    checkboxes: Mapped[int] = mapped_column(BigInteger, default=0)
    classifications: Mapped[str] = mapped_column(String(2000), default="")
    log_personal_info: Mapped[bool] = mapped_column(Boolean, default=False)
    #: normalised name, kana, company, phones, address, e-mail and memos: partial-match search
    #: (``active_history``: the old value is known on change, for the n-gram index)
    search_text: Mapped[str] = mapped_column(Text, default="", active_history=True)


class CrmSearchGram(Base):
    """One block of the n-gram posting index of contacts' ``search_text`` (migration 0004).

    For every 1-, 2- and 3-character substring (``gram``) of a contact's search
    text, and every trigram at its field offset (``trigram + "\x1f" + "j.o"``),
    the contact id is in the posting set of (tenant, gram, block = id >> 16);
    ``n`` is the size of that set and ``data`` the set itself (see
    :mod:`provisioner.services.crm.search_index`). ``gram`` sorts by code point
    (collation "C" on PostgreSQL): positioned trigrams are read by range.
    """

    __tablename__ = "crm_search_grams"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    gram: Mapped[str] = mapped_column(
        String(12).with_variant(String(12, collation="C"), "postgresql"), primary_key=True
    )
    block: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class CrmSearchPending(Base):
    """One logged change of the search index (migration 0020_search_pending): a small
    write's keys of one contact, removed and added, not yet folded into
    ``crm_search_grams`` (see :mod:`provisioner.services.crm.search_index.pending`).
    Rows are appended in ``seq`` order; readers apply them over the sets."""

    __tablename__ = "crm_search_pending"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    contact_id: Mapped[int] = mapped_column(_ID)
    #: the keys, each between line breaks ("\n" + "\n".join(keys) + "\n"), or ""
    removed: Mapped[str] = mapped_column(Text)
    added: Mapped[str] = mapped_column(Text)


class CrmTally(Base):
    """A maintained count of one tenant's records (migration 0006).

    ``(name, value) -> n``: ``("records", "")`` is the number of rows of every
    table of :data:`CRM_TENANT_TABLES` (disk usage); the others count records
    by field value for impact analysis -- ``("contact.memo_3", "gold")``,
    ``("contact.checkboxes", "5")``, ``("company.classifications", "agency")``,
    ``("custom.visits", "place")`` ... (see :mod:`provisioner.services.crm.tally`).
    """

    __tablename__ = "crm_tallies"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(String(80), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class CrmCareer(Base):
    """A previous position of a contact, kept when company, department or title changes."""

    __tablename__ = "crm_careers"
    __table_args__ = (Index("ix_crm_careers_tenant_contact", "tenant_id", "contact_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    contact_id: Mapped[int] = mapped_column(_ID, _ref("crm_contacts"))
    until: Mapped[datetime]
    company_name: Mapped[str] = mapped_column(String(200), default="")
    department_name: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    recorded_by: Mapped[str] = mapped_column(String(100))


class CrmJob(_Stamped, Base):
    """A previous or concurrent job of a contact, entered by hand (migration 0016_crm_jobs),
    beside the automatic career history (:class:`CrmCareer`)."""

    __tablename__ = "crm_jobs"
    __table_args__ = (Index("ix_crm_jobs_tenant_contact", "tenant_id", "contact_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    contact_id: Mapped[int] = mapped_column(_ID, _ref("crm_contacts"))
    #: "previous" (ended, or ending) or "concurrent" (held beside the main position)
    kind: Mapped[str] = mapped_column(String(20), default="previous")
    company_name: Mapped[str] = mapped_column(String(200))
    department_name: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    date_from: Mapped[str] = mapped_column(String(10), default="")
    date_to: Mapped[str] = mapped_column(String(10), default="")
    note: Mapped[str] = mapped_column(Text, default="")


class CrmFamily(_Stamped, Base):
    __tablename__ = "crm_family"
    __table_args__ = (Index("ix_crm_family_tenant_contact", "tenant_id", "contact_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    contact_id: Mapped[int] = mapped_column(_ID, _ref("crm_contacts"))
    relation: Mapped[str] = mapped_column(String(63), default="")
    name: Mapped[str] = mapped_column(String(200))
    kana: Mapped[str] = mapped_column(String(200), default="")
    sex: Mapped[str] = mapped_column(String(63), default="")
    birthday: Mapped[str] = mapped_column(String(10), default="")
    living_together: Mapped[bool] = mapped_column(Boolean, default=False)
    occupation: Mapped[str] = mapped_column(String(200), default="")
    hobby: Mapped[str] = mapped_column(String(200), default="")


class CrmCardExchange(_Stamped, Base):
    __tablename__ = "crm_card_exchanges"
    __table_args__ = (Index("ix_crm_card_exchanges_tenant_contact", "tenant_id", "contact_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    contact_id: Mapped[int] = mapped_column(_ID, _ref("crm_contacts"))
    employee: Mapped[str] = mapped_column(String(100))
    date: Mapped[str] = mapped_column(String(10))
    note: Mapped[str] = mapped_column(Text, default="")


class CrmSecretNote(_Stamped, Base):
    """A note only its author can read (admins included)."""

    __tablename__ = "crm_secret_notes"
    __table_args__ = (Index("ix_crm_secret_notes_tenant_contact", "tenant_id", "contact_id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    contact_id: Mapped[int] = mapped_column(_ID, _ref("crm_contacts"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)


class CrmActivity(_Stamped, Base):
    __tablename__ = "crm_activities"
    __table_args__ = (
        Index("ix_crm_activities_tenant_contact_date", "tenant_id", "contact_id", "date"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    contact_id: Mapped[int] = mapped_column(_ID, _ref("crm_contacts"))
    date: Mapped[str] = mapped_column(String(10))
    kind: Mapped[str] = mapped_column(String(63), default="")
    content: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    response: Mapped[str] = mapped_column(Text, default="")
    store: Mapped[str] = mapped_column(String(200), default="")
    staff: Mapped[str] = mapped_column(String(100), default="")
    memo: Mapped[str] = mapped_column(Text, default="")
    # content fields 1..10, labelled by the configuration (migration 0011_users)
    content_1: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_2: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_3: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_4: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_5: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_6: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_7: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_8: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_9: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_10: Mapped[str] = mapped_column(Text, default="", server_default="")


class CrmProduct(_Stamped, Base):
    __tablename__ = "crm_products"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    code: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    #: a product classification code of the configuration (``classifications.product``)
    product_class: Mapped[str] = mapped_column(String(63), default="")
    unit_price: Mapped[int | None] = mapped_column(BigInteger)


class CrmPurchase(_Stamped, Base):
    __tablename__ = "crm_purchases"
    __table_args__ = (
        Index("ix_crm_purchases_tenant_contact_date", "tenant_id", "contact_id", "date"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    contact_id: Mapped[int] = mapped_column(_ID, _ref("crm_contacts"))
    date: Mapped[str] = mapped_column(String(10))
    product_class: Mapped[str] = mapped_column(String(63), default="")
    product_code: Mapped[str] = mapped_column(String(63), default="")
    product_name: Mapped[str] = mapped_column(String(200), default="")
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    unit_price: Mapped[int] = mapped_column(BigInteger, default=0)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    payment_method: Mapped[str] = mapped_column(String(63), default="")
    shipped: Mapped[bool] = mapped_column(Boolean, default=False)
    paid: Mapped[bool] = mapped_column(Boolean, default=False)
    media: Mapped[str] = mapped_column(String(63), default="")
    memo: Mapped[str] = mapped_column(Text, default="")


class CrmCustomRecord(_Stamped, Base):
    """A record of a configured custom database, attached to a company/department/contact."""

    __tablename__ = "crm_custom_records"
    __table_args__ = (
        Index("ix_crm_custom_records_tenant_db_owner", "tenant_id", "database", "owner_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    database: Mapped[str] = mapped_column(String(63))
    owner_id: Mapped[int] = mapped_column(_ID)
    data: Mapped[dict[str, Any]]


class CrmExternalLink(_Stamped, Base):
    """A customer's id in another system (``settings.external_systems``)."""

    __tablename__ = "crm_external_links"
    __table_args__ = (
        UniqueConstraint("tenant_id", "system", "external_id"),
        Index("ix_crm_external_links_tenant_contact", "tenant_id", "contact_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    contact_id: Mapped[int] = mapped_column(_ID, _ref("crm_contacts"))
    system: Mapped[str] = mapped_column(String(63))
    external_id: Mapped[str] = mapped_column(String(200))


class CrmChange(Base):
    """Update history: who changed which record, when, what, and why."""

    __tablename__ = "crm_changes"
    __table_args__ = (
        Index("ix_crm_changes_tenant_record", "tenant_id", "record_type", "record_id"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    record_type: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[int] = mapped_column(_ID)
    action: Mapped[str] = mapped_column(String(20))  # create | update | delete
    changes: Mapped[dict[str, Any]]
    purpose: Mapped[str] = mapped_column(Text, default="")


class CrmAccess(Base):
    """Access log: logins, personal-info views, exports, prints, bulk operations, imports."""

    __tablename__ = "crm_access_log"
    __table_args__ = (Index("ix_crm_access_log_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(30))
    subject: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict[str, Any]]


#: Every CRM table (all tenant-scoped; row-level security on PostgreSQL).
CRM_TENANT_TABLES: tuple[str, ...] = (
    "crm_companies",
    "crm_departments",
    "crm_contacts",
    "crm_careers",
    "crm_family",
    "crm_card_exchanges",
    "crm_secret_notes",
    "crm_activities",
    "crm_products",
    "crm_purchases",
    "crm_custom_records",
    "crm_external_links",
    "crm_changes",
    "crm_access_log",
    "crm_jobs",
)
#: Derived, tenant-scoped tables: the search index and the maintained counts (row-level
#: security on PostgreSQL as well; not records themselves).
CRM_SEARCH_TABLES: tuple[str, ...] = (
    "crm_search_grams",
    "crm_search_pending",
    "crm_tallies",
    "crm_company_grams",
)
