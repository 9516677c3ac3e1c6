"""call_bytes: what each tenant's call records take on disk, maintained (+ RLS on PostgreSQL)

``call_bytes`` (tenant) -> (calls, note_bytes): the number of the tenant's
``call_records`` rows and the UTF-8 bytes of their notes. Disk usage charged
``count(*) * 256 + bytes of the notes`` by scanning every call the tenant ever
recorded, on every quota check (every metered call); it now reads this row,
which every write of call records keeps in its own transaction. Backfilled here
from the rows as they are (a tenant without calls gets no row: zero).

PostgreSQL: forced row-level security with the policies every tenant table has
(``tenant_isolation``, ``operator_read``, ``operator_write``; migration 0021).

Revision ID: 0022_call_bytes
Revises: 0021_rls_all_tables
Create Date: 2026-12-08 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0022_call_bytes'
down_revision = '0021_rls_all_tables'
branch_labels = None
depends_on = None

# read once per statement (scalar subqueries), as migration 0021's policies
SCOPE = "(SELECT NULLIF(current_setting('provisioner.tenant_id', true), '')::int)"
OPERATOR = "(SELECT current_setting('provisioner.operator', true))"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    op.create_table(
        'call_bytes',
        sa.Column('tenant_id', sa.Integer(), nullable=False, autoincrement=False),
        sa.Column('calls', sa.BigInteger(), nullable=False),
        sa.Column('note_bytes', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_call_bytes_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_call_bytes')))
    # the bytes of a note as disk usage counted them: octet_length on PostgreSQL, the
    # length of the text as a BLOB (its UTF-8 bytes) on SQLite
    note = ('octet_length(contact_note)' if postgres
            else 'length(CAST(contact_note AS BLOB))')
    if postgres:  # every tenant's calls (an owner that is not superuser is under RLS too)
        op.execute("SELECT set_config('provisioner.operator', 'read', true)")
    op.execute(
        'INSERT INTO call_bytes (tenant_id, calls, note_bytes) '  # noqa: S608 (constants)
        f'SELECT tenant_id, count(*), coalesce(sum({note}), 0) FROM call_records '
        'GROUP BY tenant_id')
    if postgres:
        op.execute("SELECT set_config('provisioner.operator', '', true)")
        op.execute('ALTER TABLE call_bytes ENABLE ROW LEVEL SECURITY')
        op.execute('ALTER TABLE call_bytes FORCE ROW LEVEL SECURITY')
        op.execute('CREATE POLICY tenant_isolation ON call_bytes USING '
                   f'(tenant_id = {SCOPE}) WITH CHECK (tenant_id = {SCOPE})')
        op.execute('CREATE POLICY operator_read ON call_bytes FOR SELECT '
                   f"USING ({OPERATOR} IN ('read', 'write'))")
        op.execute('CREATE POLICY operator_write ON call_bytes '
                   f"USING ({OPERATOR} = 'write') WITH CHECK ({OPERATOR} = 'write')")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for policy in ('operator_write', 'operator_read', 'tenant_isolation'):
            op.execute(f'DROP POLICY IF EXISTS {policy} ON call_bytes')
    op.drop_table('call_bytes')
