"""config documents: each distinct configuration document stored once, addressed by digest

* ``config_documents`` (digest, body, size_bytes, created_at): a document's RFC 8785
  bytes under ``"sha256:" + SHA-256(bytes)``. No tenant: shared content, reachable
  only through a tenant's own rows that name the digest (docs/scaling.md: a
  reference table).
* ``config_versions``: ``document`` goes; a version is its ``digest`` (the document
  stored whole under it) or ``base_digest`` + ``delta`` (a stored document and the
  difference, ``provisioner.config.delta``). ``size_bytes`` stays the logical size.
* ``transfers``: ``incoming`` goes; ``incoming_digest`` names the stored sections
  (a foreign key to ``config_documents`` on PostgreSQL; on SQLite a plain column,
  altered in place: ``config_lineage`` rows reference ``transfers``).

Existing rows move: every distinct version document and incoming configuration is
stored once, each version and transfer then names it. Downgrading writes the
documents back into the rows (deltas applied).

Revision ID: 0018_config_documents
Revises: 0016_crm_jobs
Create Date: 2026-12-07 18:00:00.000000
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0018_config_documents"
down_revision = "0016_crm_jobs"
branch_labels = None
depends_on = None

_CHUNK = 200


def _lz4(table: str, column: str) -> None:
    """PostgreSQL: TOAST the column with lz4, as 0001 set the large columns (when available)."""
    bind = op.get_bind()
    if (
        bind.dialect.name == "postgresql"
        and bind.exec_driver_sql(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar()
    ):
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.create_table(
        "config_documents",
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_config_documents")),
    )
    _lz4("config_documents", "body")
    with op.batch_alter_table("config_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_digest", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("delta", sa.LargeBinary(), nullable=True))
    # SQLite: plain ALTER TABLE on transfers (config_lineage rows reference it, so batch
    # mode's copy-drop-rename would break their foreign key); the column stays nullable
    # and without a foreign key there (DROP COLUMN could not drop it again otherwise)
    op.add_column("transfers", sa.Column("incoming_digest", sa.String(length=80), nullable=True))
    _move_rows()
    with op.batch_alter_table("config_versions", schema=None) as batch_op:
        batch_op.drop_column("document")
        batch_op.create_foreign_key(
            batch_op.f("fk_config_versions_base_digest_config_documents"),
            "config_documents",
            ["base_digest"],
            ["digest"],
        )
    op.drop_column("transfers", "incoming")
    if not _sqlite():
        op.alter_column(
            "transfers", "incoming_digest", existing_type=sa.String(length=80), nullable=False
        )
        op.create_foreign_key(
            op.f("fk_transfers_incoming_digest_config_documents"),
            "transfers",
            "config_documents",
            ["incoming_digest"],
            ["digest"],
        )


def _move_rows() -> None:
    """Store every distinct document once; versions and transfers name theirs."""
    bind = op.get_bind()
    documents = sa.table(
        "config_documents",
        sa.column("digest"),
        sa.column("body"),
        sa.column("size_bytes"),
        sa.column("created_at"),
    )
    seen: set[str] = set()

    def store(rows: list[dict[str, Any]]) -> None:
        fresh = [r for r in rows if r["digest"] not in seen]
        unique = {r["digest"]: r for r in fresh}
        seen.update(unique)
        if unique:
            bind.execute(documents.insert(), list(unique.values()))

    # versions: their digest is already the document's (RFC 8785 text, UTF-8)
    last = (-1, -1)
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT tenant_id, version, digest, document, created_at FROM config_versions "
                "WHERE tenant_id > :t OR (tenant_id = :t AND version > :v) "
                "ORDER BY tenant_id, version LIMIT :n"
            ),
            {"t": last[0], "v": last[1], "n": _CHUNK},
        ).all()
        if not rows:
            break
        batch = []
        for tenant_id, version, digest, document, created_at in rows:
            body = document.encode("utf-8")
            actual = "sha256:" + hashlib.sha256(body).hexdigest()
            if actual != digest:  # never trust a digest over the bytes it names
                raise RuntimeError(
                    f"config_versions ({tenant_id}, {version}): digest {digest} "
                    f"does not match its document ({actual})"
                )
            batch.append(
                {"digest": digest, "body": body, "size_bytes": len(body), "created_at": created_at}
            )
        store(batch)
        last = (rows[-1][0], rows[-1][1])
    # transfers: the incoming sections' digest is computed from their bytes
    last_id = -1
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, incoming, received_at FROM transfers WHERE id > :i ORDER BY id LIMIT :n"
            ),
            {"i": last_id, "n": _CHUNK},
        ).all()
        if not rows:
            break
        batch, names = [], []
        for transfer_id, incoming, received_at in rows:
            body = bytes(incoming)
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            batch.append(
                {"digest": digest, "body": body, "size_bytes": len(body), "created_at": received_at}
            )
            names.append({"i": transfer_id, "d": digest})
        store(batch)
        bind.execute(sa.text("UPDATE transfers SET incoming_digest = :d WHERE id = :i"), names)
        last_id = rows[-1][0]


def downgrade() -> None:
    if not _sqlite():
        op.drop_constraint(
            "fk_transfers_incoming_digest_config_documents", "transfers", type_="foreignkey"
        )
    op.add_column("transfers", sa.Column("incoming", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("config_versions", schema=None) as batch_op:
        batch_op.drop_constraint(
            "fk_config_versions_base_digest_config_documents", type_="foreignkey"
        )
        batch_op.add_column(sa.Column("document", sa.Text(), nullable=True))
    bind = op.get_bind()
    bodies: dict[str, bytes] = {}

    def body(digest: str) -> bytes:
        if digest not in bodies:
            bodies[digest] = bytes(
                bind.execute(
                    sa.text("SELECT body FROM config_documents WHERE digest = :d"), {"d": digest}
                ).scalar_one()
            )
        return bodies[digest]

    for transfer_id, digest in bind.execute(
        sa.text("SELECT id, incoming_digest FROM transfers")
    ).all():
        bind.execute(
            sa.text("UPDATE transfers SET incoming = :b WHERE id = :i"),
            {"b": body(digest), "i": transfer_id},
        )
    for tenant_id, version, digest, base_digest, delta in bind.execute(
        sa.text("SELECT tenant_id, version, digest, base_digest, delta FROM config_versions")
    ).all():
        if base_digest is None:
            text = body(digest).decode("utf-8")
        else:
            data = _apply(json.loads(body(base_digest)), json.loads(bytes(delta)))
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        bind.execute(
            sa.text(
                "UPDATE config_versions SET document = :d WHERE tenant_id = :t AND version = :v"
            ),
            {"d": text, "t": tenant_id, "v": version},
        )
    with op.batch_alter_table("config_versions", schema=None) as batch_op:
        batch_op.alter_column("document", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("delta")
        batch_op.drop_column("base_digest")
    if not _sqlite():  # (SQLite cannot make an added column NOT NULL: it stays nullable)
        op.alter_column("transfers", "incoming", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_column("transfers", "incoming_digest")
    _lz4("config_versions", "document")
    _lz4("transfers", "incoming")
    op.drop_table("config_documents")


def _apply(base: Any, delta: dict[str, Any] | None) -> Any:
    """provisioner.config.delta.apply as of this revision (a migration runs frozen code)."""
    if delta is None:
        return base
    if "$" in delta:
        return delta["$"]
    if "o" in delta:
        out = dict(base)
        for key in delta.get("x", ()):
            out.pop(key, None)
        for key, sub in delta["o"].items():
            out[key] = _apply(base[key], sub) if key in base else sub["$"]
        return out
    size = delta["n"]
    items = list(base[:size]) + [None] * max(0, size - len(base))
    for index, sub in delta["a"]:
        items[index] = _apply(base[index], sub) if index < len(base) else sub["$"]
    return items
