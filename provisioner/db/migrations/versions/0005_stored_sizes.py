"""stored sizes: the bytes of each configuration version and received bundle, kept on the row

Disk usage sums these instead of measuring every stored document on every write
(which grew with the tenant's history). Also joins the CRM and provisioning branches.

Revision ID: 0005_stored_sizes
Revises: 0003_provisioning, 0004_search_index
Create Date: 2026-11-23 12:55:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_stored_sizes'
down_revision = ('0003_provisioning', '0004_search_index')
branch_labels = None
depends_on = None


def _bytes(column: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"octet_length({column})"
    return f"length(CAST({column} AS BLOB))"


def upgrade() -> None:
    with op.batch_alter_table('config_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('size_bytes', sa.BigInteger(), nullable=False,
                                      server_default='0'))
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('envelope_bytes', sa.BigInteger(), nullable=False,
                                      server_default='0'))
    op.execute(f"UPDATE config_versions SET size_bytes = {_bytes('document')}")  # noqa: S608
    op.execute("UPDATE transfers SET envelope_bytes = length(envelope)")


def downgrade() -> None:
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.drop_column('envelope_bytes')
    with op.batch_alter_table('config_versions', schema=None) as batch_op:
        batch_op.drop_column('size_bytes')
