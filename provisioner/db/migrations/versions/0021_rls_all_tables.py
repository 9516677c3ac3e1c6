"""row-level security on every tenant table (PostgreSQL): forced, with operator and credential policies

Until now only the CRM tables (and the tables added after them) were under
forced row-level security; the core tables that carry ``tenant_id`` relied on
the services' own filters. This revision enables and forces it on all of them
and gives every tenant table the same policy set:

* ``tenant_isolation``: the rows of the tenant the transaction is scoped to
  (``provisioner.tenant_id``), read and written;
* ``operator_read`` / ``operator_write``: every tenant's rows, for the
  cross-tenant work that the services declare explicitly
  (``provisioner.operator`` = ``read`` or ``write``: a rollout's batches, the
  billing run, the workflow scheduler's scan, operator commands);

and, where a row must be reachable before its tenant is known, a policy keyed
on the credential that reaches it (transaction-local settings the services
set from what the caller presented):

* ``memberships``, ``login_sessions``: the user's own rows
  (``provisioner.user_id``), a session by its token hash (``provisioner.session``);
* ``copy_keys``: a key by its selector (``provisioner.copy_key``), for the
  sender who redeems it;
* ``signing_keys``: a public key by its key id (``provisioner.signing_key``),
  for the receiver who verifies a bundle signed with it;
* ``transfers``: the source sees what it sent (signed by one of its keys);
* ``rollout_targets``: the publisher sees its runs' targets.

Every setting is read through a scalar subquery, which PostgreSQL evaluates once
per statement rather than once per row (the CRM tables' ``tenant_isolation`` is
redefined that way too: a LIKE scan under row-level security measured 10-13% faster).

SQLite has no row-level security: nothing changes there.

Revision ID: 0021_rls_all_tables
Revises: 0020_search_pending
Create Date: 2026-12-07 21:10:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0021_rls_all_tables'
down_revision = '0020_search_pending'
branch_labels = None
depends_on = None

#: the tables of this revision's schema that carry tenant_id and had no RLS
CORE = (
    'audit_events', 'business_hours', 'call_records', 'config_lineage', 'config_versions',
    'copy_keys', 'cti_contracts', 'disk_addons', 'holidays', 'login_sessions', 'memberships',
    'phone_numbers', 'rollout_runs', 'rollout_targets', 'signing_keys', 'transfers',
    'trusted_publishers', 'user_departments',
)
#: the tables already under forced RLS with tenant_isolation (they get the operator policies)
FORCED = (
    'crm_access_log', 'crm_activities', 'crm_card_exchanges', 'crm_careers', 'crm_changes',
    'crm_companies', 'crm_company_grams', 'crm_contacts', 'crm_custom_records',
    'crm_departments', 'crm_external_links', 'crm_family', 'crm_jobs', 'crm_products',
    'crm_purchases', 'crm_record_states', 'crm_search_grams', 'crm_search_pending',
    'crm_secret_notes', 'crm_tallies', 'notifications', 'wf_due_firings', 'wf_executions',
    'wf_stats',
)


def _setting(name: str) -> str:
    # a scalar subquery: evaluated once per statement (an InitPlan), not once per row
    return f"(SELECT NULLIF(current_setting('provisioner.{name}', true), ''))"


SCOPE = "(SELECT NULLIF(current_setting('provisioner.tenant_id', true), '')::int)"
USER = "(SELECT NULLIF(current_setting('provisioner.user_id', true), '')::int)"
OPERATOR = "(SELECT current_setting('provisioner.operator', true))"
#: the CRM tables' tenant_isolation as their migrations made it (per-row evaluation)
OLD_SCOPE = "NULLIF(current_setting('provisioner.tenant_id', true), '')::int"

#: (table, policy, command, USING, WITH CHECK or None)
EXTRA = (
    ('memberships', 'member_self', 'SELECT', f'user_id = {USER}', None),
    ('login_sessions', 'session_self', 'SELECT', f'user_id = {USER}', None),
    # a session moves only to a tenant its user is a member of (no policy of memberships
    # reads login_sessions: policies that read each other's tables recurse)
    ('login_sessions', 'session_self_update', 'UPDATE', f'user_id = {USER}',
     f'user_id = {USER} AND tenant_id IN (SELECT m.tenant_id FROM memberships m '  # noqa: S608
     f'WHERE m.user_id = {USER} AND m.disabled_at IS NULL)'),
    ('login_sessions', 'session_token', 'SELECT', f"token_hash = {_setting('session')}", None),
    ('copy_keys', 'key_selector', 'SELECT', f"selector = {_setting('copy_key')}", None),
    # the redeemer marks the key used; that the key stays its tenant's is the runtime
    # role's column privileges' (provisioner.db.roles: it may update only the use,
    # revocation and failure columns of copy_keys): a policy on copy_keys cannot read
    # copy_keys (infinite recursion)
    ('copy_keys', 'key_selector_update', 'UPDATE', f"selector = {_setting('copy_key')}",
     f"selector = {_setting('copy_key')}"),
    ('signing_keys', 'key_lookup', 'SELECT', f"key_id = {_setting('signing_key')}", None),
    ('transfers', 'source_read', 'SELECT',
     f'signer_key_id IN (SELECT key_id FROM signing_keys WHERE tenant_id = {SCOPE})',  # noqa: S608 (constants)
     None),
    ('rollout_targets', 'publisher_read', 'SELECT',
     f'run_id IN (SELECT id FROM rollout_runs WHERE tenant_id = {SCOPE})',  # noqa: S608
     None),
)


def _operator_policies(table: str) -> None:
    op.execute(f"CREATE POLICY operator_read ON {table} FOR SELECT "
               f"USING ({OPERATOR} IN ('read', 'write'))")
    op.execute(f"CREATE POLICY operator_write ON {table} "
               f"USING ({OPERATOR} = 'write') WITH CHECK ({OPERATOR} = 'write')")


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in CORE:
        op.execute(f'ALTER TABLE {table} ENABLE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE {table} FORCE ROW LEVEL SECURITY')
        op.execute(f'CREATE POLICY tenant_isolation ON {table} USING '
                   f'(tenant_id = {SCOPE}) WITH CHECK (tenant_id = {SCOPE})')
    for table in FORCED:  # the same rule, its setting read once per statement
        op.execute(f'ALTER POLICY tenant_isolation ON {table} USING '
                   f'(tenant_id = {SCOPE}) WITH CHECK (tenant_id = {SCOPE})')
    for table in CORE + FORCED:
        _operator_policies(table)
    for table, name, command, using, check in EXTRA:
        with_check = f' WITH CHECK ({check})' if check else ''
        op.execute(f'CREATE POLICY {name} ON {table} FOR {command} USING ({using}){with_check}')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, name, _, _, _ in EXTRA:
        op.execute(f'DROP POLICY IF EXISTS {name} ON {table}')
    for table in CORE + FORCED:
        op.execute(f'DROP POLICY IF EXISTS operator_write ON {table}')
        op.execute(f'DROP POLICY IF EXISTS operator_read ON {table}')
    for table in FORCED:
        op.execute(f'ALTER POLICY tenant_isolation ON {table} USING '
                   f'(tenant_id = {OLD_SCOPE}) WITH CHECK (tenant_id = {OLD_SCOPE})')
    for table in CORE:
        op.execute(f'DROP POLICY IF EXISTS tenant_isolation ON {table}')
        op.execute(f'ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE {table} DISABLE ROW LEVEL SECURITY')
