"""Rebuild or verify a tenant's derived data: ``provisioner reindex [-t T | --all] [--check]``.

Derived data is what the product computes from the records and keeps next to
them, so that reads stay cheap; an older release may have computed it
differently (a fixed bug stays in the stored results until they are computed
again). Per tenant, in one transaction:

* **search text** of every contact (``records.contact_search_text``: its fields
  and its company's current name), rewritten where it differs;
* **search index** (``crm_search_grams``): built again from the search texts and
  compared with the stored one (as sets of contact ids per gram and block);
* **company search index** (``crm_companies.search_text``, ``crm_company_grams``);
* **tallies** (``crm_tallies``): recounted from the tables (``tally.recount``);
* **call bytes** (``call_bytes``): the calls and note bytes disk usage charges for
  the call records, recounted from ``call_records`` (``call_usage.recount``);
* **disk usage**: the stored byte size of every configuration version (the
  UTF-8 bytes of its document) and of every received bundle file.

``check=True`` reports the differences and changes nothing (the rebuild runs in
the transaction, which is then rolled back).

Upgrades: :data:`VERSIONS` numbers how this release computes each kind of derived
data, and the ``derived_data`` table what computed the database's. ``provisioner
init`` calls :func:`refresh`: when a kind's number went up (or the database
predates the table), every tenant is rebuilt, the new numbers stored, and what
changed reported -- with each tenant's disk usage before and after when how usage
is counted changed. Bump a number (and say why in :data:`NOTES` and CHANGELOG.md)
in any release that changes one of those computations.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from provisioner.db.crm_models import CrmCompany, CrmContact, CrmSearchGram
from provisioner.db.models import ConfigVersion, DerivedData, Tenant, Transfer
from provisioner.services import documents, tenants, transfers
from provisioner.services.crm import company_search, records, search_index, tally
from provisioner.services.provisioning import call_usage, quotas
from provisioner.services.transaction import Context

if TYPE_CHECKING:
    from collections.abc import Callable

    from provisioner.services.context import Provisioner

#: how this release computes each kind of derived data: ``search`` (search text,
#: search index, tallies) and ``usage`` (the stored sizes disk usage adds up).
#: Raise a number when a release changes that computation; ``init`` then rebuilds.
VERSIONS: dict[str, int] = {"search": 1, "usage": 1}

#: what each version changed, printed by ``init`` when it rebuilds (also in CHANGELOG.md)
NOTES: dict[tuple[str, int], str] = {
    ("search", 1): "search text, search index and tallies are computed again by this "
    "release (a deleted company's name no longer stays in its former "
    "contacts' search text)",
    ("usage", 1): "disk usage counts the UTF-8 bytes of every stored configuration "
    "version and of every received bundle file as stored",
}


@dataclass
class Report:
    """What differed from a fresh computation (after a rebuild: what was corrected)."""

    tenant: str
    contacts: int = 0
    search_text: int = 0
    search_index: int = 0
    tallies: int = 0
    sizes: int = 0
    #: companies whose search text or grams (``crm_company_grams``) differed
    company_index: int = 0
    #: 1 if the maintained call figures (``call_bytes``) differed from a recount
    call_bytes: int = 0

    @property
    def clean(self) -> bool:
        return not (
            self.search_text
            or self.search_index
            or self.tallies
            or self.sizes
            or self.company_index
            or self.call_bytes
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"clean": self.clean}


def reindex(ctx: Context, tenant: Tenant, *, check: bool = False) -> Report:
    """Compare the tenant's derived data with a fresh computation; rebuild it unless
    ``check``. Differences are counted in the report either way."""
    ctx.enter_tenant(tenant.id)
    session = ctx.session
    session.flush()
    conn = session.connection()
    report = Report(tenant.slug)
    with _changes(session, keep=not check):
        texts = _search_texts(conn, tenant.id)
        report.contacts = len(texts)
        stale = [(cid, new) for cid, (old, new) in texts.items() if old != new]
        report.search_text = len(stale)
        if stale:
            contacts = CrmContact.__table__
            assert isinstance(contacts, Table)
            conn.execute(
                update(contacts)
                .where(contacts.c.tenant_id == tenant.id, contacts.c.id == bindparam("contact_id"))
                .values(search_text=bindparam("text")),
                [{"contact_id": cid, "text": new} for cid, new in stale],
            )
        report.search_index = _rebuild_index(
            conn, tenant.id, {cid: new for cid, (_, new) in texts.items()}
        )
        report.company_index = company_search.rebuild(conn, tenant.id)
        stored, fresh = tally.stored(conn, tenant.id), tally.recount(conn, tenant.id)
        report.tallies = len(
            {k for k in stored.keys() | fresh.keys() if stored.get(k) != fresh.get(k)}
        )
        if report.tallies:
            tally.rebuild(conn, tenant.id)
        report.sizes = _sizes(session, tenant.id)
        if call_usage.stored(conn, tenant.id) != call_usage.recount(conn, tenant.id):
            report.call_bytes = 1
            call_usage.rebuild(conn, tenant.id)
    session.expire_all()
    return report


@contextmanager
def _changes(session: Session, *, keep: bool) -> Iterator[None]:
    """Writes inside are kept, or (a check) the whole transaction is rolled back."""
    try:
        yield
    finally:
        if not keep:
            session.rollback()


def _search_texts(conn: Connection, tenant_id: int) -> dict[int, tuple[str, str]]:
    """Contact id -> (stored search text, the text computed now)."""
    companies = dict(
        conn.execute(
            select(CrmCompany.id, CrmCompany.name).where(CrmCompany.tenant_id == tenant_id)
        ).all()
    )
    columns = [CrmContact.__table__.c[name] for name in records.SEARCH_PARTS]
    out: dict[int, tuple[str, str]] = {}
    for row in conn.execute(
        select(CrmContact.id, CrmContact.search_text, CrmContact.company_id, *columns)
        .where(CrmContact.tenant_id == tenant_id)
        .order_by(CrmContact.id)
    ).mappings():
        company = companies.get(row["company_id"], "") if row["company_id"] else ""
        out[row["id"]] = (row["search_text"] or "", records.search_text(dict(row), company))
    return out


def _index_digest(conn: Connection, tenant_id: int) -> tuple[dict[tuple[str, int], bytes], int]:
    """(gram, block) -> a digest of its contact ids; and the number of entries."""
    out: dict[tuple[str, int], bytes] = {}
    table = CrmSearchGram.__table__
    for gram, block, data in conn.execute(
        select(table.c.gram, table.c.block, table.c.data).where(table.c.tenant_id == tenant_id)
    ):
        ids = array("I", search_index.members(search_index.decode(data)))
        if ids:
            out[(gram, block)] = hashlib.blake2b(ids.tobytes(), digest_size=16).digest()
    return out, len(out)


def _rebuild_index(conn: Connection, tenant_id: int, texts: dict[int, str]) -> int:
    """Build the index again; the number of (gram, block) entries that differed (the
    pending log folded into the sets first: it is part of the index as stored)."""
    search_index.fold(conn, tenant_id)
    before, _ = _index_digest(conn, tenant_id)
    conn.execute(delete(CrmSearchGram).where(CrmSearchGram.tenant_id == tenant_id))
    builder = search_index.Builder(conn, tenant_id)
    ids = sorted(texts)
    builder.add_many(ids, [texts[i] for i in ids])
    builder.finish()
    after, _ = _index_digest(conn, tenant_id)
    return sum(1 for key in before.keys() | after.keys() if before.get(key) != after.get(key))


def _sizes(session: Session, tenant_id: int) -> int:
    """Stored sizes that differ from the bytes they measure, corrected in place."""
    wrong = 0
    for row in session.scalars(select(ConfigVersion).where(ConfigVersion.tenant_id == tenant_id)):
        version, size = row.version, row.size_bytes
        actual = len(documents.version_body(session, row))
        if size != actual:
            wrong += 1
            session.execute(
                update(ConfigVersion)
                .where(ConfigVersion.tenant_id == tenant_id, ConfigVersion.version == version)
                .values(size_bytes=actual)
            )
    for transfer in session.scalars(select(Transfer).where(Transfer.tenant_id == tenant_id)):
        actual = len(transfers.bundle_file(session, transfer))
        if transfer.envelope_bytes != actual:
            wrong += 1
            transfer.envelope_bytes = actual
    session.flush()
    return wrong


@dataclass
class Refresh:
    """What :func:`refresh` found and did."""

    #: kind -> (version the database held, this release's); only those rebuilt
    stale: dict[str, tuple[int, int]]
    reports: list[Report]
    #: (tenant, used bytes before, after) where the usage changed
    usage: list[tuple[str, int, int]]

    @property
    def notes(self) -> list[str]:
        return [
            NOTES[(name, v)]
            for name, (old, new) in sorted(self.stale.items())
            for v in range(old + 1, new + 1)
            if (name, v) in NOTES
        ]

    def describe(self) -> list[str]:
        """Lines for ``init``: what was rebuilt and why, usage that changed."""
        if not self.stale:
            return []
        kinds = ", ".join(
            f"{name} {old} -> {new}" for name, (old, new) in sorted(self.stale.items())
        )
        differed = sum(1 for r in self.reports if not r.clean)
        lines = [
            f"rebuilt the derived data of {len(self.reports):,} tenant(s) computed by "
            f"an older release (derived-data versions {kinds}); {differed:,} differed"
        ]
        lines += [f"  changed in this release: {note}" for note in self.notes]
        lines += [
            f"  disk usage of {slug}: {before:,} -> {after:,} bytes"
            for slug, before, after in self.usage
        ]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "stale": {k: {"from": a, "to": b} for k, (a, b) in self.stale.items()},
            "notes": self.notes,
            "tenants": [r.to_dict() for r in self.reports],
            "usage": [{"tenant": t, "before": a, "after": b} for t, a, b in self.usage],
        }


def stored_versions(ctx: Context) -> dict[str, int]:
    """The versions of the code that computed the database's derived data (none: 0)."""
    return {
        name: int(version)
        for name, version in ctx.session.execute(select(DerivedData.name, DerivedData.version))
    }


def _record_versions(ctx: Context) -> None:
    rows = {row.name: row for row in ctx.session.scalars(select(DerivedData))}
    now = ctx.clock.now()
    for name, version in VERSIONS.items():
        row = rows.get(name)
        if row is None:
            ctx.session.add(DerivedData(name=name, version=version, computed_at=now))
        elif row.version < version:
            row.version, row.computed_at = version, now
    ctx.session.flush()


def refresh(
    app: Provisioner, *, created: bool = False, progress: Callable[[str], None] | None = None
) -> Refresh:
    """Rebuild the derived data an older release computed differently (``init``).

    A new database (``created``) only records this release's versions. Otherwise
    every kind whose stored version is below :data:`VERSIONS` is stale, and then
    every tenant is rebuilt (one transaction each, as ``provisioner reindex
    --all``); the versions are recorded last, so an interrupted refresh is done
    again by the next ``init``. A database from a newer release keeps its numbers.
    """
    with app.transaction() as ctx:
        stored = stored_versions(ctx)
        stale = (
            {}
            if created
            else {
                name: (stored.get(name, 0), version)
                for name, version in VERSIONS.items()
                if stored.get(name, 0) < version
            }
        )
        ids = [t.id for t in tenants.list_all(ctx)] if stale else []
    result = Refresh(stale, [], [])
    for tenant_id in ids:
        with app.transaction() as ctx:
            ctx.enter_tenant(tenant_id)  # row-level security: this tenant's rows
            tenant = ctx.session.get_one(Tenant, tenant_id)
            slug = tenant.slug
            before = quotas.usage(ctx, tenant).used_bytes
            report = reindex(ctx, tenant)
            after = quotas.usage(ctx, tenant).used_bytes
        result.reports.append(report)
        if before != after:
            result.usage.append((slug, before, after))
        if progress is not None:
            progress(
                f"{slug}: {report.contacts:,} contacts" + ("" if report.clean else ", rebuilt")
            )
    if stale or created or set(VERSIONS) - set(stored):
        with app.transaction() as ctx:
            _record_versions(ctx)
    return result
