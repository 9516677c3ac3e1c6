"""transfer storage: a received bundle is stored once, as bytes; disk usage read from indexes

* ``transfers.payload_frame``: a bundle whose payload carries its configuration
  verbatim is stored as its normalised configuration (``incoming``) plus the rest
  of the file (``envelope``, the payload cut out) and this frame, instead of the
  whole file beside a copy of the configuration (``bundles.payload.split_file``).
  Existing rows keep the whole file (no frame).
* ``transfers.incoming`` holds the UTF-8 bytes of the configuration (binary, not
  text): it is written as verified, never decoded and encoded again on the way.
* ``(tenant_id, size_bytes)`` on config_versions and ``(tenant_id, envelope_bytes)``
  on transfers: disk usage sums the sizes from these indexes, not from the rows
  (SQLite stores those columns after the megabyte-sized ones it would walk past).

Revision ID: 0007_transfer_storage
Revises: 0006_crm_tallies
Create Date: 2026-11-23 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_transfer_storage'
down_revision = '0006_crm_tallies'
branch_labels = None
depends_on = None


def _lz4(column: str) -> None:
    """PostgreSQL: keep the column TOASTed with lz4, as 0001 set it (when the server has lz4)."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.exec_driver_sql(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
            "WHERE name = 'default_toast_compression'").scalar():
        op.execute(f"ALTER TABLE transfers ALTER COLUMN {column} SET COMPRESSION lz4")


def upgrade() -> None:
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload_frame', sa.JSON(), nullable=True))
        batch_op.alter_column('incoming', existing_type=sa.Text(), type_=sa.LargeBinary(),
                              existing_nullable=False,
                              postgresql_using="convert_to(incoming, 'UTF8')")
        batch_op.create_index('ix_transfers_tenant_id_envelope_bytes',
                              ['tenant_id', 'envelope_bytes'], unique=False)
    with op.batch_alter_table('config_versions', schema=None) as batch_op:
        batch_op.create_index('ix_config_versions_tenant_id_size_bytes',
                              ['tenant_id', 'size_bytes'], unique=False)
    _lz4("incoming")


def downgrade() -> None:
    with op.batch_alter_table('config_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_config_versions_tenant_id_size_bytes')
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.drop_index('ix_transfers_tenant_id_envelope_bytes')
        batch_op.alter_column('incoming', existing_type=sa.LargeBinary(), type_=sa.Text(),
                              existing_nullable=False,
                              postgresql_using="convert_from(incoming, 'UTF8')")
        batch_op.drop_column('payload_frame')
    _lz4("incoming")
