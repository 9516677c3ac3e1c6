"""previous and concurrent jobs of a contact, entered by hand; company search

* ``crm_jobs``: a contact's previous or concurrent job (company, department,
  title, from / to dates, note), beside the automatic career history
  (``crm_careers``);
* ``crm_companies.search_text`` and ``crm_company_grams`` (tenant, gram, company
  id): the company search index. Created empty; ``provisioner init`` builds
  it (``rebuilds``) with the code of the day.

Both tables are tenant-scoped with row-level security on PostgreSQL.

Revision ID: 0016_crm_jobs
Revises: 0015_derived_data
Create Date: 2026-12-07 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016_crm_jobs'
down_revision = '0015_derived_data'
branch_labels = None
depends_on = None
#: derived data ``provisioner init`` rebuilds when this revision is applied
rebuilds = ("company_index",)

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    # PostgreSQL: tenant_id in the keys, as 0014_tenant_keys made them (docs/scaling.md)
    tenant = ['tenant_id'] if op.get_bind().dialect.name == 'postgresql' else []
    op.create_table(
        'crm_jobs',
        # (autoincrement named: on PostgreSQL the key is composite, id stays serial)
        sa.Column('id', _ID, nullable=False, autoincrement=True),
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
        sa.ForeignKeyConstraint(['contact_id', *tenant],
                                ['crm_contacts.id', *(f'crm_contacts.{c}' for c in tenant)],
                                name=op.f('fk_crm_jobs_contact_id_crm_contacts'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_crm_jobs_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('id', *tenant, name=op.f('pk_crm_jobs')))
    op.create_index('ix_crm_jobs_tenant_contact', 'crm_jobs', ['tenant_id', 'contact_id'])
    # a plain ADD COLUMN with a constant default: no table rewrite
    op.add_column('crm_companies', sa.Column('search_text', sa.Text(), nullable=False,
                                             server_default=''))
    op.create_table(
        'crm_company_grams',
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('gram', sa.String(length=3).with_variant(
            sa.String(length=3, collation='C'), 'postgresql'), nullable=False),
        sa.Column('company_id', _ID, nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_crm_company_grams_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('tenant_id', 'gram', 'company_id',
                                name=op.f('pk_crm_company_grams')))
    op.create_index('ix_crm_company_grams_tenant_company', 'crm_company_grams',
                    ['tenant_id', 'company_id'])
    if op.get_bind().dialect.name == 'postgresql':
        scope = "NULLIF(current_setting('provisioner.tenant_id', true), '')::int"
        for table in ('crm_jobs', 'crm_company_grams'):
            op.execute(f'ALTER TABLE {table} ENABLE ROW LEVEL SECURITY')
            op.execute(f'ALTER TABLE {table} FORCE ROW LEVEL SECURITY')
            op.execute(f'CREATE POLICY tenant_isolation ON {table} USING '
                       f'(tenant_id = {scope}) WITH CHECK (tenant_id = {scope})')


def downgrade() -> None:
    op.drop_index('ix_crm_company_grams_tenant_company', table_name='crm_company_grams')
    op.drop_table('crm_company_grams')
    # a plain DROP COLUMN (SQLite >= 3.35): a batch rebuild of crm_companies would drop
    # the table, which deletes the departments that reference it
    op.execute('ALTER TABLE crm_companies DROP COLUMN search_text')
    op.drop_index('ix_crm_jobs_tenant_contact', table_name='crm_jobs')
    op.drop_table('crm_jobs')
