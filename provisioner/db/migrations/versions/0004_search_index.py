"""crm search index: n-gram posting blocks of contacts' search text (+ RLS on PostgreSQL)

Builds the index for the contacts that already exist.

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
    from provisioner.services.crm import search_index

    tenants = [t for (t,) in bind.execute(sa.text("SELECT DISTINCT tenant_id FROM crm_contacts"))]
    for tenant_id in tenants:
        if bind.dialect.name == "postgresql":
            bind.execute(sa.text("SELECT set_config('provisioner.tenant_id', :t, true)"),
                         {"t": str(tenant_id)})
        rows = bind.execute(sa.text(
            "SELECT id, search_text FROM crm_contacts WHERE tenant_id = :t ORDER BY id"),
            {"t": tenant_id}).all()
        search_index.index_new(bind, tenant_id, [(i, s) for i, s in rows])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP POLICY IF EXISTS tenant_isolation ON crm_search_grams")
    op.drop_table('crm_search_grams')
