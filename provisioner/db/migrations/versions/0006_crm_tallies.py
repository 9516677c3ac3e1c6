"""crm tallies: maintained per-tenant counts of CRM records (+ RLS on PostgreSQL)

The number of records (disk usage) and the records by picklist value, checkbox,
classification and custom field (impact analysis), kept by every write path
instead of counted per write or per plan. Creates the table only: the counts
of the data that already exists are derived data, which ``provisioner init``
counts after the migrations, with the code of the day (named in ``rebuilds``).

Revision ID: 0006_crm_tallies
Revises: 0005_stored_sizes
Create Date: 2026-11-23 13:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006_crm_tallies'
down_revision = '0005_stored_sizes'
branch_labels = None
depends_on = None
#: derived data ``provisioner init`` rebuilds when this revision is applied
rebuilds = ("tallies",)


def upgrade() -> None:
    op.create_table('crm_tallies',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('value', sa.String(length=80), nullable=False),
    sa.Column('n', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_crm_tallies_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'name', 'value', name=op.f('pk_crm_tallies'))
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE crm_tallies ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE crm_tallies FORCE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY tenant_isolation ON crm_tallies USING "
            "(tenant_id = NULLIF(current_setting('provisioner.tenant_id', true), '')::int) "
            "WITH CHECK (tenant_id = NULLIF(current_setting('provisioner.tenant_id', true), '')::int)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP POLICY IF EXISTS tenant_isolation ON crm_tallies")
    op.drop_table('crm_tallies')
