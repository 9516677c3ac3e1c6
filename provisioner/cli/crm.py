"""CRM commands: records, search, CTI lookup, CSV import/export, bulk operations, sample data.

    provisioner seed-data -t acme --contacts 1000 --seed 1
    provisioner search -t acme --as sato --q 田中 --checked 3 --limit 20
    provisioner search-companies -t acme --as sato --q 渋谷 --classification agency
    provisioner lookup -t acme --as sato "+81 3 1234 5678"
    provisioner import customers customers.csv -t 1 --as sato --dry-run
    provisioner import inquiries calls.csv -t 2 --as sato
    provisioner export customers -t acme --as sato -o list.csv --columns name,kana,address
    provisioner record create contact -t acme --as sato --data '{"name": "田中 太郎"}'

``-t`` takes the tenant's slug or its number in the user's tenant list; a user
with several tenants who omits it is shown the numbered list and asked (exit 2
with the list when there is no terminal to ask on).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import click
import orjson

from provisioner.cli.output import State, emit, pass_state, table
from provisioner.cli.tenant_choice import tenant_option
from provisioner.errors import ValidationFailed
from provisioner.services import actors
from provisioner.services.actors import Actor
from provisioner.services.crm import (
    bulk,
    company_search,
    csvio,
    inquiries,
    printing,
    records,
    search,
    seed,
)
from provisioner.services.provisioning import metering

#: -t N|SLUG, resolved to the slug before the command runs (see tenant_choice)
TENANT_REF = tenant_option()
AS_REQUIRED = click.option("--as", "login", required=True, metavar="LOGIN", help="the acting user")
CODES_HELP = "show picklist and classification codes rather than their labels"


def _load_json(value: str) -> dict[str, Any]:
    raw = Path(value[1:]).read_bytes() if value.startswith("@") else value.encode()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(f"--data is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationFailed("--data must be a JSON object of field values")
    return data


def _search_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--q", "q", default="", help="partial match (space-separated terms)"),
        click.option(
            "--match",
            type=click.Choice(["all", "any"]),
            default="all",
            help="combine every condition with AND (all) or OR (any)",
        ),
        click.option(
            "--field",
            "fields",
            multiple=True,
            metavar="FIELD=TEXT",
            help="partial match on one field (name, kana, company, phone, ...)",
        ),
        click.option(
            "--checked",
            type=click.IntRange(1, 48),
            multiple=True,
            help="checkbox N must be checked",
        ),
        click.option(
            "--unchecked",
            type=click.IntRange(1, 48),
            multiple=True,
            help="checkbox N must be unchecked",
        ),
        click.option("--classification", default=None),
        click.option("--updated-from", default=None, metavar="DATE"),
        click.option("--updated-to", default=None, metavar="DATE"),
        click.option("--activity-kind", default=None),
        click.option("--activity-text", default=None),
        click.option("--activity-from", default=None, metavar="DATE"),
        click.option("--activity-to", default=None, metavar="DATE"),
        click.option("--purchase-product", default=None),
        click.option("--purchase-from", default=None, metavar="DATE"),
        click.option("--purchase-to", default=None, metavar="DATE"),
        click.option("--purchase-shipped", type=click.Choice(["yes", "no"]), default=None),
        click.option("--purchase-paid", type=click.Choice(["yes", "no"]), default=None),
        click.option(
            "--purchase-payment",
            "purchase_payment_method",
            default=None,
            metavar="CODE",
            help="payment method code",
        ),
        click.option("--birthday-from", default=None, metavar="DATE"),
        click.option("--birthday-to", default=None, metavar="DATE"),
        click.option("--created-from", default=None, metavar="DATE", help="registered on or after"),
        click.option("--created-to", default=None, metavar="DATE"),
        click.option("--age-from", type=click.IntRange(0, 200), default=None),
        click.option("--age-to", type=click.IntRange(0, 200), default=None),
        click.option("--title", default=None, help="partial match on the title"),
        click.option("--postal-code", default=None, help="partial match (digits)"),
        click.option("--department", default=None, help="partial match on the department"),
        click.option(
            "--sort",
            default="id",
            help="id, name, kana, created_at, updated_at; -name for descending",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _query(kw: dict[str, Any], *, limit: int = 50, offset: int = 0) -> search.Query:
    fields: dict[str, str] = {}
    for spec in kw.pop("fields"):
        key, sep, value = spec.partition("=")
        if not sep:
            raise ValidationFailed(f"--field {spec!r}: write FIELD=TEXT")
        fields[key] = value
    for key in ("title", "postal_code", "department"):
        value = kw.pop(key)
        if value is not None:
            fields[key] = value
    for key in ("purchase_shipped", "purchase_paid"):
        kw[key] = None if kw[key] is None else kw[key] == "yes"
    boxes = {i: True for i in kw.pop("checked")}
    for i in kw.pop("unchecked"):
        if i in boxes:
            raise ValidationFailed(f"checkbox {i} cannot be both checked and unchecked")
        boxes[i] = False
    return search.Query(fields=fields, checkboxes=boxes, limit=limit, offset=offset, **kw)


@click.command("seed-data")
@TENANT_REF
@click.option("--as", "login", metavar="LOGIN", help="acting admin (default: the operator)")
@click.option("--contacts", type=click.IntRange(1, 10_000_000), required=True)
@click.option("--seed", "seed_value", type=int, default=0, show_default=True)
@pass_state
def seed_data(state: State, tenant: str, login: str | None, contacts: int, seed_value: int) -> None:
    """Realistic Japanese sample customers (names, kana, companies, addresses, phones)."""
    with state.transaction() as ctx:
        if login is not None:
            actor = actors.resolve(ctx, login, tenant)
        else:
            t = actors.get_tenant(ctx, tenant)
            actor = Actor(
                login="operator", user_id=0, tenant_id=t.id, tenant_slug=t.slug, role="admin"
            )
        made = seed.seed_contacts(ctx, actor, contacts, seed=seed_value)
    emit(
        state,
        {"tenant": actor.tenant_slug, "contacts": made},
        f"created {made} sample contacts in {actor.tenant_slug!r}",
    )


@click.command("search")
@TENANT_REF
@AS_REQUIRED
@_search_options
@click.option("--limit", type=click.IntRange(0, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@pass_state
def search_cmd(
    state: State, /, tenant: str, login: str, limit: int, offset: int, **kw: Any
) -> None:
    """Search customers; prints the exact total and one page."""
    query = _query(kw, limit=limit, offset=offset)
    with state.transaction() as ctx:
        result = search.search(ctx, actors.resolve(ctx, login, tenant), query)
    emit(
        state,
        {"total": result.total, "items": result.items},
        lambda: (
            table(
                [
                    (i["id"], i["name"], i["kana"], i["company"], i["phone"], i["address"])
                    for i in result.items
                ],
                ["id", "name", "kana", "company", "phone", "address"],
            )
            + f"\n{result.total} found"
        ),
    )


@click.command("search-companies")
@TENANT_REF
@AS_REQUIRED
@click.option(
    "--q",
    "q",
    default="",
    help="partial match on name, kana, phone, address (space-separated terms)",
)
@click.option(
    "--match",
    type=click.Choice(["all", "any"]),
    default="all",
    help="combine every condition with AND (all) or OR (any)",
)
@click.option("--name", default=None, help="partial match on the name")
@click.option("--kana", default=None, help="partial match on the kana")
@click.option("--address", default=None, help="partial match on the address")
@click.option("--phone", default=None, help="digits of the phone number (any formatting)")
@click.option("--classification", default=None, metavar="CODE")
@click.option(
    "--sort", default="id", help="id, name, kana, created_at, updated_at; -name for descending"
)
@click.option("--limit", type=click.IntRange(0, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@pass_state
def search_companies_cmd(state: State, /, tenant: str, login: str, **kw: Any) -> None:
    """Search companies; prints the exact total and one page."""
    with state.transaction() as ctx:
        result = company_search.search(
            ctx, actors.resolve(ctx, login, tenant), company_search.CompanyQuery(**kw)
        )
    emit(
        state,
        {"total": result.total, "items": result.items},
        lambda: (
            table(
                [(i["id"], i["name"], i["kana"], i["phone"], i["address"]) for i in result.items],
                ["id", "name", "kana", "phone", "address"],
            )
            + f"\n{result.total} found"
        ),
    )


@click.command("lookup")
@TENANT_REF
@AS_REQUIRED
@click.argument("phone")
@click.option(
    "--call-id",
    "call_ref",
    default=None,
    metavar="ID",
    help="the telephony side's call id: the call is recorded and charged once",
)
@click.option("--codes", is_flag=True, help=CODES_HELP)
@pass_state
def lookup_cmd(
    state: State, tenant: str, login: str, phone: str, call_ref: str | None, codes: bool
) -> None:
    """The caller's card (CTI screen pop): profile, latest purchases and activities.

    The screen pop is the metered call: it is recorded with its charge."""
    with state.transaction() as ctx:
        card = metering.screen_pop(
            ctx, actors.resolve(ctx, login, tenant), phone, call_ref=call_ref, codes=codes
        )

    def text() -> str:
        c = card["contact"]
        lines = [
            f"{c['name']} ({c['kana']})  {c['company_name']}  {c['title']}",
            f"phone {c['phone']}  mobile {c['mobile']}  {c['email']}",
            c["address"],
        ]
        if card["other_matches"]:
            lines.append(f"also matching: contacts {card['other_matches']}")
        lines += ["", "purchases:"] + [
            f"  {p['date']}  {p['product_name']}  {p['amount']}" for p in card["purchases"]
        ]
        lines += ["activities:"] + [
            f"  {a['date']}  {a['kind']}  {a['content'][:40]}" for a in card["activities"]
        ]
        call = card["call"]
        lines += [
            "",
            f"call {call['id']}{' (' + call['ref'] + ')' if call['ref'] else ''}: "
            f"{call['classification']}, {call['charge_jpy']} JPY",
        ]
        return "\n".join(lines)

    emit(state, card, text)


@click.group("import")
def import_group() -> None:
    """Import records from CSV files (admins)."""


@import_group.command("customers")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@TENANT_REF
@AS_REQUIRED
@click.option("--dry-run", is_flag=True, help="check every row, write nothing")
@pass_state
def import_customers(state: State, file: str, tenant: str, login: str, dry_run: bool) -> None:
    """Import customers: UTF-8 / UTF-8 BOM / CP932; all rows or none (read as it goes:
    memory stays bounded whatever the file's size)."""
    with _seekable(file) as raw, state.transaction() as ctx:
        actor = actors.resolve(ctx, login, tenant)
        if sys.stderr.isatty() and not state.as_json:
            with click.progressbar(
                length=max(1, _lines(raw)), label="importing", file=sys.stderr
            ) as bar:
                report = csvio.import_customers(
                    ctx, actor, raw, dry_run=dry_run, source=Path(file).name, progress=bar.update
                )
        else:
            report = csvio.import_customers(
                ctx, actor, raw, dry_run=dry_run, source=Path(file).name
            )
    data = {
        "rows": report.rows,
        "created": report.created,
        "encoding": report.encoding,
        "companies_created": report.companies_created,
        "dry_run": dry_run,
    }
    emit(
        state,
        data,
        (f"{report.rows} rows are valid ({report.encoding}); nothing written (dry run)")
        if dry_run
        else f"imported {report.created} customers ({report.encoding}), "
        f"{report.companies_created} new companies",
    )


@contextlib.contextmanager
def _seekable(file: str) -> Iterator[IO[bytes]]:
    """The file opened for reading (standard input spooled to a temporary file first)."""
    if file == "-":
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool)
            spool.seek(0)
            yield spool
        return
    try:
        raw = Path(file).open("rb")  # noqa: SIM115 (closed below, after the import)
    except OSError as exc:
        raise ValidationFailed(f"cannot read {file}: {exc.strerror}") from None
    with raw:
        yield raw


def _lines(raw: IO[bytes]) -> int:
    """How many lines the file has (read in chunks; the file is left at its start)."""
    count = 0
    while chunk := raw.read(1 << 20):
        count += chunk.count(b"\n")
    raw.seek(0)
    return count


@import_group.command("inquiries")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@TENANT_REF
@AS_REQUIRED
@click.option("--dry-run", is_flag=True, help="check every row, write nothing")
@pass_state
def import_inquiries(state: State, file: str, tenant: str, login: str, dry_run: bool) -> None:
    """Import inquiries (contact history) of existing customers, by contact_id or phone:
    UTF-8 / UTF-8 BOM / CP932; all rows or none. Without -t, a user with several tenants
    is shown their numbered list."""
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"cannot read {file}: {exc.strerror}") from None
    with state.transaction() as ctx:
        report = inquiries.import_inquiries(
            ctx, actors.resolve(ctx, login, tenant), raw, dry_run=dry_run, source=Path(file).name
        )
    data = {
        "tenant": tenant,
        "rows": report.rows,
        "created": report.created,
        "encoding": report.encoding,
        "dry_run": dry_run,
    }
    emit(
        state,
        data,
        (f"{report.rows} rows are valid ({report.encoding}); nothing written (dry run)")
        if dry_run
        else f"imported {report.created} inquiries into {tenant} ({report.encoding})",
    )


@click.group("export")
def export_group() -> None:
    """Export records as CSV (Excel-friendly)."""


def _export_command(kind: str) -> click.Command:
    @export_group.command(kind)
    @TENANT_REF
    @AS_REQUIRED
    @click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, allow_dash=True))
    @click.option(
        "--encoding",
        type=click.Choice(["utf-8-sig", "cp932"]),
        default="utf-8-sig",
        show_default=True,
    )
    @click.option("--columns", default=None, help="comma-separated column keys, in order")
    @click.option("--codes", is_flag=True, help=CODES_HELP)
    @_search_options
    @pass_state
    def command(
        state: State,
        /,
        tenant: str,
        login: str,
        output: str,
        encoding: str,
        columns: str | None,
        codes: bool,
        **kw: Any,
    ) -> None:
        query = _query(kw)
        wanted = columns.split(",") if columns else None
        if output == "-":
            with state.transaction() as ctx:
                csvio.export_to(
                    ctx,
                    actors.resolve(ctx, login, tenant),
                    kind,
                    query,
                    sys.stdout.buffer,
                    columns=wanted,
                    encoding=encoding,
                    codes=codes,
                )
            return
        part = Path(f"{output}.part")  # the file appears whole, or not at all
        try:
            with part.open("wb") as out, state.transaction() as ctx:
                lines = csvio.export_to(
                    ctx,
                    actors.resolve(ctx, login, tenant),
                    kind,
                    query,
                    out,
                    columns=wanted,
                    encoding=encoding,
                    codes=codes,
                )
            part.replace(output)
        except OSError as exc:
            raise ValidationFailed(f"cannot write {output}: {exc.strerror}") from None
        finally:
            part.unlink(missing_ok=True)
        emit(
            state,
            {"file": output, "rows": lines, "encoding": encoding},
            f"wrote {lines} rows to {output} ({encoding})",
        )

    command.help = f"Export {kind} of the customers a search finds."
    return command


for _kind in csvio.EXPORT_COLUMNS:
    _export_command(_kind)


@click.group("print")
def print_group() -> None:
    """Printable lists and address labels (HTML; open it and print from the browser)."""


@print_group.command("customers")
@TENANT_REF
@AS_REQUIRED
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--layout", type=click.Choice(list(printing.LAYOUTS)), default="list", show_default=True
)
@click.option("--codes", is_flag=True, help=CODES_HELP)
@_search_options
@pass_state
def print_customers(
    state: State, /, tenant: str, login: str, output: str, layout: str, codes: bool, **kw: Any
) -> None:
    """Print the customers a search finds (refused without the 'print' permission; logged)."""
    query = _query(kw)
    with state.transaction() as ctx:
        page = printing.print_customers(
            ctx, actors.resolve(ctx, login, tenant), query, layout=layout, codes=codes
        )
    if output == "-":
        sys.stdout.write(page)
        return
    Path(output).write_text(page, encoding="utf-8")
    emit(state, {"file": output, "layout": layout}, f"wrote {output} ({layout})")


@click.group("record")
def record_group() -> None:
    """Create, show, update, delete CRM records (types: company, contact, activity, ...)."""


TYPE_ARG = click.argument("type_name", metavar="TYPE", type=click.Choice(list(records.TYPES)))


@record_group.command("create")
@TYPE_ARG
@TENANT_REF
@AS_REQUIRED
@click.option("--data", required=True, help="JSON object of field values, or @file.json")
@click.option("--purpose", default=None, help="why (kept in the update history)")
@pass_state
def record_create(
    state: State, type_name: str, tenant: str, login: str, data: str, purpose: str | None
) -> None:
    values = _load_json(data)
    with state.transaction() as ctx:
        saved = records.create(
            ctx, actors.resolve(ctx, login, tenant), type_name, values, purpose=purpose
        )
    out = {"record": saved.record, "duplicates": saved.duplicates}
    text = f"created {type_name} {saved.record['id']}"
    if saved.duplicates:
        text += "\npossible duplicates (same name): " + ", ".join(
            f"{d['id']} {d['name']}" for d in saved.duplicates
        )
    emit(state, out, text)


def _record_text(data: dict[str, Any]) -> str:
    """A record as ``key: value`` lines; a contact's career history and jobs one a line."""
    lines = [f"{k}: {v}" for k, v in data.items() if k not in ("careers", "jobs")]
    if data.get("jobs"):
        lines.append("jobs (entered):")
        lines += [
            f"  [{j['id']}] {j['kind']}  {j['date_from'] or '?'} - {j['date_to'] or ''}  "
            f"{j['company_name']} {j['department_name']} {j['title']}".rstrip()
            for j in data["jobs"]
        ]
    if data.get("careers"):
        lines.append("career history (automatic):")
        lines += [
            f"  until {c['until']}  {c['company']} {c['department']} {c['title']}".rstrip()
            for c in data["careers"]
        ]
    return "\n".join(lines)


@record_group.command("show")
@TYPE_ARG
@click.argument("record_id", type=click.IntRange(1))
@TENANT_REF
@AS_REQUIRED
@pass_state
def record_show(state: State, type_name: str, record_id: int, tenant: str, login: str) -> None:
    with state.transaction() as ctx:
        data = records.show(ctx, actors.resolve(ctx, login, tenant), type_name, record_id)
    emit(state, data, lambda: _record_text(data))


@record_group.command("update")
@TYPE_ARG
@click.argument("record_id", type=click.IntRange(1))
@TENANT_REF
@AS_REQUIRED
@click.option("--data", required=True, help="JSON object of field values, or @file.json")
@click.option("--purpose", default=None, help="why (kept in the update history)")
@pass_state
def record_update(
    state: State,
    type_name: str,
    record_id: int,
    tenant: str,
    login: str,
    data: str,
    purpose: str | None,
) -> None:
    values = _load_json(data)
    with state.transaction() as ctx:
        saved = records.update(
            ctx, actors.resolve(ctx, login, tenant), type_name, record_id, values, purpose=purpose
        )
    emit(
        state,
        {"record": saved.record, "duplicates": saved.duplicates},
        f"updated {type_name} {record_id}",
    )


@record_group.command("delete")
@TYPE_ARG
@click.argument("record_id", type=click.IntRange(1))
@TENANT_REF
@AS_REQUIRED
@click.option("--purpose", default=None)
@pass_state
def record_delete(
    state: State, type_name: str, record_id: int, tenant: str, login: str, purpose: str | None
) -> None:
    with state.transaction() as ctx:
        records.delete_record(
            ctx, actors.resolve(ctx, login, tenant), type_name, record_id, purpose=purpose
        )
    emit(state, {"deleted": record_id}, f"deleted {type_name} {record_id}")


@record_group.command("history")
@TYPE_ARG
@click.argument("record_id", type=click.IntRange(1))
@TENANT_REF
@AS_REQUIRED
@pass_state
def record_history(state: State, type_name: str, record_id: int, tenant: str, login: str) -> None:
    """Update history: who, when, what, purpose."""
    with state.transaction() as ctx:
        rows = records.history(ctx, actors.resolve(ctx, login, tenant), type_name, record_id)
    emit(
        state,
        rows,
        lambda: table(
            [
                (
                    r["at"],
                    r["actor"],
                    r["action"],
                    orjson.dumps(r["changes"]).decode()[:60],
                    r["purpose"],
                )
                for r in rows
            ],
            ["at", "actor", "action", "changes", "purpose"],
        ),
    )


@click.group("bulk")
def bulk_group() -> None:
    """Bulk update / delete over a search result."""


@bulk_group.command("update")
@TENANT_REF
@AS_REQUIRED
@_search_options
@click.option("--set-checked", type=click.IntRange(1, 48), multiple=True)
@click.option("--set-unchecked", type=click.IntRange(1, 48), multiple=True)
@click.option("--company-id", type=click.IntRange(1), default=None)
@click.option("--purpose", default=None)
@pass_state
def bulk_update(
    state: State,
    /,
    tenant: str,
    login: str,
    set_checked: tuple[int, ...],
    set_unchecked: tuple[int, ...],
    company_id: int | None,
    purpose: str | None,
    **kw: Any,
) -> None:
    query = _query(kw)
    boxes = {**{i: True for i in set_checked}, **{i: False for i in set_unchecked}}
    with state.transaction() as ctx:
        n = bulk.bulk_update(
            ctx,
            actors.resolve(ctx, login, tenant),
            query,
            checkboxes=boxes,
            company_id=company_id,
            purpose=purpose,
        )
    emit(state, {"updated": n}, f"updated {n} customers")


@bulk_group.command("delete")
@TENANT_REF
@AS_REQUIRED
@_search_options
@click.option("--yes", is_flag=True, required=True, help="confirm")
@click.option("--purpose", default=None)
@pass_state
def bulk_delete(
    state: State, /, tenant: str, login: str, yes: bool, purpose: str | None, **kw: Any
) -> None:
    query = _query(kw)
    with state.transaction() as ctx:
        n = bulk.bulk_delete(ctx, actors.resolve(ctx, login, tenant), query, purpose=purpose)
    emit(state, {"deleted": n}, f"deleted {n} customers")


@click.command("access-log")
@TENANT_REF
@AS_REQUIRED
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@pass_state
def access_log(state: State, tenant: str, login: str, limit: int) -> None:
    """Logins, personal-info views, exports, prints, bulk operations, imports (admins)."""
    with state.transaction() as ctx:
        rows = records.access_log(ctx, actors.resolve(ctx, login, tenant), limit=limit)
    emit(
        state,
        rows,
        lambda: table(
            [(r["at"], r["actor"], r["kind"], r["subject"]) for r in rows],
            ["at", "actor", "kind", "subject"],
        ),
    )


def register(cli: click.Group) -> None:
    for command in (
        seed_data,
        search_cmd,
        search_companies_cmd,
        lookup_cmd,
        import_group,
        export_group,
        print_group,
        record_group,
        bulk_group,
        access_log,
    ):
        cli.add_command(command)
