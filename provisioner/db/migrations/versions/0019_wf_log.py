"""workflow execution log lean enough for bulk writes; per-workflow counters

* ``wf_executions.record_ids`` and ``last_record_id``: a bulk write (a CSV import)
  logs one row per rule for every record it fired on alike, their ids packed in
  ``record_ids`` (``"7-900,905"``), the lowest in ``record_id``, the highest in
  ``last_record_id`` (a row for one record: ``''`` and null). A partial index on
  the rows naming several records finds a record's rows among them.
* ``wf_stats`` (tenant, workflow): how many times each workflow fired and when it
  last did, kept with the log (``workflow list`` reads it, not the whole log).

Existing rows are converted: runs of consecutive rows of a tenant that are alike but
for the record (what an import wrote, one row per record) become one row each, and
``wf_stats`` is counted from the log. On PostgreSQL the tenant table rules hold:
``wf_stats`` is keyed by tenant and under row-level security (the conversion runs
tenant by tenant under the tenant setting, so it also works as a non-superuser owner).

Revision ID: 0019_wf_log
Revises: 0018_config_documents
Create Date: 2026-12-07 18:30:00.000000
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0019_wf_log'
down_revision = '0018_config_documents'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
#: as provisioner.db.workflow_models.BATCH_SPAN (a migration keeps its own copy)
_SPAN = 16384
_PAGE = 10000

_LOG = sa.table(
    'wf_executions',
    sa.column('id', sa.BigInteger()),
    sa.column('tenant_id', sa.Integer()),
    sa.column('at', sa.DateTime(timezone=True)),
    sa.column('workflow', sa.String()),
    sa.column('config_version', sa.Integer()),
    sa.column('record_type', sa.String()),
    sa.column('record_id', sa.BigInteger()),
    sa.column('trigger', sa.String()),
    sa.column('depth', sa.Integer()),
    sa.column('changes', sa.JSON()),
    sa.column('error', sa.Text()),
    sa.column('last_record_id', sa.BigInteger()),
    sa.column('record_ids', sa.Text()),
)
_STATS = sa.table(
    'wf_stats',
    sa.column('tenant_id', sa.Integer()),
    sa.column('workflow', sa.String()),
    sa.column('firings', sa.BigInteger()),
    sa.column('last_fired', sa.DateTime(timezone=True)),
)


def _pack(ids: list[int]) -> str:
    out, first, last = [], ids[0], ids[0]
    for i in ids[1:]:
        if i == last + 1:
            last = i
            continue
        out.append(str(first) if first == last else f'{first}-{last}')
        first = last = i
    out.append(str(first) if first == last else f'{first}-{last}')
    return ','.join(out)


def _unpack(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(','):
        if part:
            first, _, last = part.partition('-')
            out.extend(range(int(first), int(last or first) + 1))
    return out


def _tenants(conn: sa.Connection) -> list[int]:
    """Every tenant (the tenants table is not under row-level security), each entered
    in turn on PostgreSQL."""
    return [int(t) for t in conn.execute(sa.text('SELECT id FROM tenants ORDER BY id')).scalars()]


def _enter(conn: sa.Connection, tenant_id: int | None) -> None:
    if conn.dialect.name == 'postgresql':
        conn.execute(sa.text("SELECT set_config('provisioner.tenant_id', :t, true)"),
                     {'t': '' if tenant_id is None else str(tenant_id)})


def _compact(conn: sa.Connection, tenant_id: int) -> None:
    """Merge the tenant's runs of rows alike but for the record; count wf_stats."""
    c = _LOG.c
    stats: dict[str, list[Any]] = {}
    run: list[tuple[int, int]] = []  # (row id, record id)
    run_key: tuple[Any, ...] | None = None

    def close() -> None:
        if len(run) > 1:
            ids = [r for _, r in run]
            conn.execute(sa.update(_LOG).where(c.id == run[0][0]).values(
                record_id=ids[0], last_record_id=ids[-1], record_ids=_pack(ids)))
            gone = [row_id for row_id, _ in run[1:]]
            for at in range(0, len(gone), 500):
                conn.execute(sa.delete(_LOG).where(c.id.in_(gone[at:at + 500])))
        run.clear()

    last = 0
    while True:
        page = conn.execute(
            sa.select(c.id, c.record_id, c.at, c.workflow, c.config_version, c.record_type,
                      c.trigger, c.depth, sa.cast(c.changes, sa.Text), c.error)
            .where(c.tenant_id == tenant_id, c.id > last, c.last_record_id.is_(None))
            .order_by(c.id).limit(_PAGE)
        ).all()
        if not page:
            break
        last = page[-1][0]
        for row_id, record_id, *rest in page:
            seen = stats.setdefault(rest[1], [0, rest[0]])
            seen[0] += 1
            seen[1] = max(seen[1], rest[0])
            key = tuple(rest)
            if not (run and key == run_key and record_id > run[-1][1]
                    and record_id - run[0][1] <= _SPAN):
                close()
                run_key = key
            run.append((row_id, record_id))
    close()
    if stats:
        conn.execute(sa.insert(_STATS), [
            {'tenant_id': tenant_id, 'workflow': w, 'firings': n, 'last_fired': at}
            for w, (n, at) in sorted(stats.items())])


def upgrade() -> None:
    conn = op.get_bind()
    postgresql = conn.dialect.name == 'postgresql'
    # constant default, nullable column: no rewrite of the table on PostgreSQL
    op.add_column('wf_executions', sa.Column('last_record_id', _ID, nullable=True))
    op.add_column('wf_executions', sa.Column('record_ids', sa.Text(), nullable=False,
                                             server_default=''))
    op.create_index('ix_wf_executions_tenant_batch', 'wf_executions',
                    ['tenant_id', 'record_type', 'record_id', 'last_record_id'],
                    postgresql_where=sa.text('last_record_id IS NOT NULL'),
                    sqlite_where=sa.text('last_record_id IS NOT NULL'))
    op.create_table(
        'wf_stats',
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('workflow', sa.String(length=63), nullable=False),
        sa.Column('firings', sa.BigInteger(), nullable=False),
        sa.Column('last_fired', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_wf_stats_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('tenant_id', 'workflow', name=op.f('pk_wf_stats')))
    if postgresql:
        scope = "NULLIF(current_setting('provisioner.tenant_id', true), '')::int"
        op.execute('ALTER TABLE wf_stats ENABLE ROW LEVEL SECURITY')
        op.execute('ALTER TABLE wf_stats FORCE ROW LEVEL SECURITY')
        op.execute(f'CREATE POLICY tenant_isolation ON wf_stats USING '
                   f'(tenant_id = {scope}) WITH CHECK (tenant_id = {scope})')
    for tenant_id in _tenants(conn):
        _enter(conn, tenant_id)
        _compact(conn, tenant_id)
    _enter(conn, None)


def downgrade() -> None:
    conn = op.get_bind()
    c = _LOG.c
    names = ['tenant_id', 'at', 'workflow', 'config_version', 'record_type', 'trigger',
             'depth', 'changes', 'error']
    for tenant_id in _tenants(conn):  # a row per record again
        _enter(conn, tenant_id)
        rows = conn.execute(
            sa.select(c.id, c.record_ids, *(c[n] for n in names))
            .where(c.tenant_id == tenant_id, c.last_record_id.is_not(None)).order_by(c.id)
        ).all()
        for row_id, packed, *values in rows:
            ids = _unpack(packed)
            conn.execute(sa.update(_LOG).where(c.id == row_id).values(
                record_id=ids[0], last_record_id=None, record_ids=''))
            if len(ids) > 1:
                conn.execute(sa.insert(_LOG), [
                    {**dict(zip(names, values, strict=True)), 'record_id': i} for i in ids[1:]])
    _enter(conn, None)
    op.drop_table('wf_stats')
    op.drop_index('ix_wf_executions_tenant_batch', table_name='wf_executions')
    # plain DROP COLUMN (SQLite >= 3.35), as 0016 does
    op.execute('ALTER TABLE wf_executions DROP COLUMN record_ids')
    op.execute('ALTER TABLE wf_executions DROP COLUMN last_record_id')
