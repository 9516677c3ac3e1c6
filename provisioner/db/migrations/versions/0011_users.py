"""users and CTI calls: tenant user administration, the user department master, call ids

* ``tenants.licensed_users``: how many users the tenant may register (NULL: no limit);
* ``memberships.disabled_at`` (a disabled user cannot log in to or act in the tenant)
  and ``memberships.department_id`` (the user's department, from the master);
* ``user_departments``: the tenant's user department master (code, name);
* ``call_records.call_ref`` (the telephony side's call id, unique per tenant: a
  screen pop of the same call is recorded once) and ``call_records.contact_id``
  (the customer the call popped up);
* ``cti_contracts.initial_jpy`` and ``list_input_jpy`` (the list-input option,
  monthly; 0 when not taken);
* ``crm_activities.content_1`` .. ``content_10``: the activity content fields the
  configuration labels (``activity.content_N``), empty by default.

Revision ID: 0011_users
Revises: 0010_throttles
Create Date: 2026-12-07 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011_users'
down_revision = '0010_throttles'
branch_labels = None
depends_on = None


CONTENTS = [f'content_{i}' for i in range(1, 11)]


def upgrade() -> None:
    for name in CONTENTS:  # plain ADD COLUMN (a constant default: no table rewrite)
        op.add_column('crm_activities', sa.Column(name, sa.Text(), nullable=False,
                                                  server_default=''))
    op.create_table(
        'user_departments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=63), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_user_departments_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_user_departments')),
        sa.UniqueConstraint('tenant_id', 'code',
                            name=op.f('uq_user_departments_tenant_id')))
    # plain ADD COLUMNs: the core tables are not rebuilt on SQLite (where a rebuild of
    # ``tenants`` would have to drop a table that every tenant table references)
    op.add_column('tenants', sa.Column('licensed_users', sa.Integer(), nullable=True))
    op.add_column('memberships', sa.Column('disabled_at', sa.DateTime(timezone=True),
                                           nullable=True))
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE memberships ADD COLUMN department_id INTEGER '
                   'REFERENCES user_departments (id)')
    else:
        op.add_column('memberships', sa.Column('department_id', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_memberships_department_id_user_departments', 'memberships',
                              'user_departments', ['department_id'], ['id'])
    with op.batch_alter_table('call_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('call_ref', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('contact_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_call_records_tenant_call_ref', ['tenant_id', 'call_ref'],
                              unique=True)
    with op.batch_alter_table('cti_contracts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('initial_jpy', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('list_input_jpy', sa.Integer(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    for name in CONTENTS:
        if op.get_bind().dialect.name == 'sqlite':  # (SQLite 3.35+), without a rebuild
            op.execute(f'ALTER TABLE crm_activities DROP COLUMN {name}')
        else:
            op.drop_column('crm_activities', name)
    with op.batch_alter_table('cti_contracts', schema=None) as batch_op:
        batch_op.drop_column('list_input_jpy')
        batch_op.drop_column('initial_jpy')
    with op.batch_alter_table('call_records', schema=None) as batch_op:
        batch_op.drop_index('ix_call_records_tenant_call_ref')
        batch_op.drop_column('contact_id')
        batch_op.drop_column('call_ref')
    with op.batch_alter_table('memberships', schema=None) as batch_op:  # nothing refers to it
        if op.get_bind().dialect.name != 'sqlite':
            batch_op.drop_constraint('fk_memberships_department_id_user_departments',
                                     type_='foreignkey')
        batch_op.drop_column('department_id')
        batch_op.drop_column('disabled_at')
    if op.get_bind().dialect.name == 'sqlite':  # (SQLite 3.35+), without a rebuild
        op.execute('ALTER TABLE tenants DROP COLUMN licensed_users')
    else:
        op.drop_column('tenants', 'licensed_users')
    op.drop_table('user_departments')
