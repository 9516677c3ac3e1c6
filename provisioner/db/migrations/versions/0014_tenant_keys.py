"""tenant keys: on PostgreSQL every key of a tenant table includes tenant_id

Makes the PostgreSQL schema ready to be distributed by tenant (Citus: the
distribution column must be part of every primary key and unique constraint) and
lets the database itself guarantee that no row points at another tenant's row:

* the primary key of each tenant table that had ``(id)`` becomes ``(id, tenant_id)``
  (``id`` first: a look-up by id alone still uses the key's index);
* each unique constraint gains ``tenant_id`` as its last column (``selector``,
  ``token_hash``, ``key_id``... keep serving look-ups by themselves; they stay
  unique across tenants by construction: random or a digest of 128 bits or more);
* each foreign key between two tenant tables becomes composite, ``(x_id,
  tenant_id)`` referencing ``(id, tenant_id)``: a contact cannot point at another
  tenant's company even when written past the application (foreign-key checks
  bypass row-level security). ``ON DELETE SET NULL`` keys null only the id column
  (``SET NULL (company_id)``: PostgreSQL 15 or newer, which this migration
  requires).

Keys to tables without a tenant (``tenants``, ``users``: reference tables) are
unchanged; ``audit_events`` keeps ``(id)``: its operator events have no tenant
(docs/scaling.md). SQLite is left as it is (one database per deployment, never
distributed; its ``INTEGER PRIMARY KEY`` is the row id).

Revision ID: 0014_tenant_keys
Revises: 0011_users
Create Date: 2026-12-07 15:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0014_tenant_keys'
down_revision = '0011_users'
branch_labels = None
depends_on = None

#: tenant tables whose primary key was (id)
TABLES = [
    'business_hours', 'call_records', 'config_lineage', 'copy_keys', 'crm_access_log',
    'crm_activities', 'crm_card_exchanges', 'crm_careers', 'crm_changes', 'crm_companies',
    'crm_contacts', 'crm_custom_records', 'crm_departments', 'crm_external_links',
    'crm_family', 'crm_products', 'crm_purchases', 'crm_secret_notes', 'cti_contracts',
    'disk_addons', 'holidays', 'login_sessions', 'memberships', 'notifications',
    'phone_numbers', 'rollout_runs', 'rollout_targets', 'signing_keys', 'transfers',
    'trusted_publishers', 'user_departments', 'wf_executions',
]

#: (table, constraint, columns before; tenant_id is appended)
UNIQUES = [
    ('config_lineage', 'uq_config_lineage_transfer_id', ['transfer_id']),
    ('copy_keys', 'uq_copy_keys_selector', ['selector']),
    ('login_sessions', 'uq_login_sessions_token_hash', ['token_hash']),
    ('rollout_targets', 'uq_rollout_targets_run_id', ['run_id', 'target_slug']),
    ('signing_keys', 'uq_signing_keys_key_id', ['key_id']),
]

#: (table, column, referenced table, ON DELETE action or None)
FOREIGN_KEYS = [
    ('config_lineage', 'transfer_id', 'transfers', None),
    ('crm_activities', 'contact_id', 'crm_contacts', 'CASCADE'),
    ('crm_card_exchanges', 'contact_id', 'crm_contacts', 'CASCADE'),
    ('crm_careers', 'contact_id', 'crm_contacts', 'CASCADE'),
    ('crm_contacts', 'company_id', 'crm_companies', 'SET NULL'),
    ('crm_contacts', 'department_id', 'crm_departments', 'SET NULL'),
    ('crm_departments', 'company_id', 'crm_companies', 'CASCADE'),
    ('crm_external_links', 'contact_id', 'crm_contacts', 'CASCADE'),
    ('crm_family', 'contact_id', 'crm_contacts', 'CASCADE'),
    ('crm_purchases', 'contact_id', 'crm_contacts', 'CASCADE'),
    ('crm_secret_notes', 'contact_id', 'crm_contacts', 'CASCADE'),
    ('memberships', 'department_id', 'user_departments', None),
    ('rollout_targets', 'run_id', 'rollout_runs', None),
    ('transfers', 'copy_key_id', 'copy_keys', None),
]


def _fk_name(table: str, column: str, referenced: str) -> str:
    return f'fk_{table}_{column}_{referenced}'


def _require_postgresql_15() -> None:
    """``ON DELETE SET NULL (column)`` needs PostgreSQL 15 or newer (the oldest release
    its project still supports)."""
    version = int(op.get_bind().exec_driver_sql('SHOW server_version_num').scalar_one())
    if version < 150000:
        raise RuntimeError(
            f'provisioner needs PostgreSQL 15 or newer (this server is {version // 10000}); '
            'upgrade the server (pg_upgrade), then run provisioner init again')


def _on_delete(action: str | None, column: str, *, by_column: bool = True) -> str:
    if action is None:
        return ''
    if action == 'SET NULL' and by_column:
        return f' ON DELETE SET NULL ({column})'
    return f' ON DELETE {action}'


def _swap_keys(*, with_tenant: bool) -> None:
    for table, column, referenced, _action in FOREIGN_KEYS:
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT {_fk_name(table, column, referenced)}')
    tenant = ['tenant_id'] if with_tenant else []
    for table, name, columns in UNIQUES:
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} '
                   f'UNIQUE ({", ".join([*columns, *tenant])})')
    for table in TABLES:
        op.execute(f'ALTER TABLE {table} DROP CONSTRAINT pk_{table}, '
                   f'ADD CONSTRAINT pk_{table} PRIMARY KEY ({", ".join(["id", *tenant])})')
    for table, column, referenced, action in FOREIGN_KEYS:
        op.execute(f'ALTER TABLE {table} ADD CONSTRAINT {_fk_name(table, column, referenced)} '
                   f'FOREIGN KEY ({", ".join([column, *tenant])}) '
                   f'REFERENCES {referenced} ({", ".join(["id", *tenant])})'
                   f'{_on_delete(action, column, by_column=with_tenant)}')


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    _require_postgresql_15()
    _swap_keys(with_tenant=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    _swap_keys(with_tenant=False)
