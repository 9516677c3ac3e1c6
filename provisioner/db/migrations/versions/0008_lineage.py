"""lineage: what each applied transfer was based on (the base of three-way upgrades)

One row per applied transfer: the source (``tenant:<slug>`` or ``key:<key id>``),
its configuration version and digest, the bundle digest and the sections whose
base moved. The source's document as it arrived is the transfer's stored
``incoming`` configuration, referenced, not copied.

Revision ID: 0008_lineage
Revises: 0007_transfer_storage
Create Date: 2026-12-07 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_lineage'
down_revision = '0007_transfer_storage'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('config_lineage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('transfer_id', sa.Integer(), nullable=False),
    sa.Column('source_version', sa.Integer(), nullable=False),
    sa.Column('source_digest', sa.String(length=80), nullable=False),
    sa.Column('bundle_digest', sa.String(length=80), nullable=False),
    sa.Column('sections', sa.JSON(), nullable=False),
    sa.Column('applied_version', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_config_lineage_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfers.id'], name=op.f('fk_config_lineage_transfer_id_transfers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_config_lineage')),
    sa.UniqueConstraint('transfer_id', name=op.f('uq_config_lineage_transfer_id'))
    )
    with op.batch_alter_table('config_lineage', schema=None) as batch_op:
        batch_op.create_index('ix_config_lineage_tenant_id_source', ['tenant_id', 'source'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('config_lineage', schema=None) as batch_op:
        batch_op.drop_index('ix_config_lineage_tenant_id_source')
    op.drop_table('config_lineage')
