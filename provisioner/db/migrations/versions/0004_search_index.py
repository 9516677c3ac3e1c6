"""crm search index: n-gram posting blocks of contacts' search text (+ RLS on PostgreSQL)

Creates the table only. The index of contacts that already exist is derived
data: ``provisioner init`` builds it after the migrations, with the code of the
day (this script names it in ``rebuilds``; it runs no code of the package, so it
behaves as it did when it was written).

Revision ID: 0004_search_index
Revises: 0002_crm
Create Date: 2026-11-23 11:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_search_index'
down_revision = '0002_crm'
branch_labels = None
depends_on = None
#: derived data ``provisioner init`` rebuilds when this revision is applied
rebuilds = ("search_index",)


def upgrade() -> None:
    op.create_table('crm_search_grams',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('gram', sa.String(length=12).with_variant(sa.String(length=12, collation='C'), 'postgresql'), nullable=False),
    sa.Column('block', sa.Integer(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_search_grams_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'gram', 'block', name=op.f('pk_crm_search_grams'))
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE crm_search_grams ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE crm_search_grams FORCE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY tenant_isolation ON crm_search_grams USING "
            "(tenant_id = NULLIF(current_setting('provisioner.tenant_id', true), '')::int) "
            "WITH CHECK (tenant_id = NULLIF(current_setting('provisioner.tenant_id', true), '')::int)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP POLICY IF EXISTS tenant_isolation ON crm_search_grams")
    op.drop_table('crm_search_grams')
