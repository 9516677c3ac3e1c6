"""crm search index: a pending log of single writes' index changes (+ RLS on PostgreSQL)

``crm_search_pending`` (tenant, seq) -> (contact id, keys removed, keys added): a
small write appends its contacts' key changes here instead of rewriting their
sets in ``crm_search_grams``; the log is folded into the sets in batches. Created
empty: an empty log means the sets are the whole index, as they were.

Revision ID: 0020_search_pending
Revises: 0019_wf_log
Create Date: 2026-12-07 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0020_search_pending'
down_revision = '0019_wf_log'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'crm_search_pending',
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False, autoincrement=False),
        sa.Column('contact_id', _ID, nullable=False),
        sa.Column('removed', sa.Text(), nullable=False),
        sa.Column('added', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_crm_search_pending_tenant_id_tenants')),
        # tenant_id leads the key on both databases (the tenant-key rule, docs/scaling.md)
        sa.PrimaryKeyConstraint('tenant_id', 'seq', name=op.f('pk_crm_search_pending')))
    if op.get_bind().dialect.name == 'postgresql':
        scope = "NULLIF(current_setting('provisioner.tenant_id', true), '')::int"
        op.execute('ALTER TABLE crm_search_pending ENABLE ROW LEVEL SECURITY')
        op.execute('ALTER TABLE crm_search_pending FORCE ROW LEVEL SECURITY')
        op.execute('CREATE POLICY tenant_isolation ON crm_search_pending USING '
                   f'(tenant_id = {scope}) WITH CHECK (tenant_id = {scope})')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP POLICY IF EXISTS tenant_isolation ON crm_search_pending')
    op.drop_table('crm_search_pending')
