"""previous and concurrent jobs of a contact, entered by hand

* ``crm_jobs``: a contact's previous or concurrent job (company, department,
  title, from / to dates, note), beside the automatic career history
  (``crm_careers``); tenant-scoped with row-level security on PostgreSQL.

Revision ID: 0013_crm_jobs
Revises: 0011_users
Create Date: 2026-12-07 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_crm_jobs'
down_revision = '0011_users'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'crm_jobs',
        sa.Column('id', _ID, nullable=False),
        sa.Column('contact_id', _ID, nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('company_name', sa.String(length=200), nullable=False),
        sa.Column('department_name', sa.String(length=200), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('date_from', sa.String(length=10), nullable=False),
        sa.Column('date_to', sa.String(length=10), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(length=100), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by', sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['crm_contacts.id'],
                                name=op.f('fk_crm_jobs_contact_id_crm_contacts'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_crm_jobs_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_crm_jobs')))
    op.create_index('ix_crm_jobs_tenant_contact', 'crm_jobs', ['tenant_id', 'contact_id'])
    if op.get_bind().dialect.name == 'postgresql':
        scope = "NULLIF(current_setting('provisioner.tenant_id', true), '')::int"
        op.execute('ALTER TABLE crm_jobs ENABLE ROW LEVEL SECURITY')
        op.execute('ALTER TABLE crm_jobs FORCE ROW LEVEL SECURITY')
        op.execute(f'CREATE POLICY tenant_isolation ON crm_jobs USING '
                   f'(tenant_id = {scope}) WITH CHECK (tenant_id = {scope})')


def downgrade() -> None:
    op.drop_index('ix_crm_jobs_tenant_contact', table_name='crm_jobs')
    op.drop_table('crm_jobs')
