"""workflows that run: blueprint states, execution log, due firings, notifications

Revision ID: 0009_workflows
Revises: 0008_lineage
Create Date: 2026-12-07 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009_workflows'
down_revision = '0008_lineage'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = ("crm_record_states", "wf_executions", "wf_due_firings", "notifications")


def upgrade() -> None:
    op.create_table(
        "crm_record_states",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(length=40), nullable=False),
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("blueprint", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=63), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_crm_record_states_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("tenant_id", "record_type", "record_id", "blueprint",
                                name="pk_crm_record_states"),
    )
    op.create_table(
        "wf_executions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workflow", sa.String(length=63), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(length=40), nullable=False),
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_wf_executions_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("id", name="pk_wf_executions"),
    )
    op.create_index("ix_wf_executions_tenant_record", "wf_executions",
                    ["tenant_id", "record_type", "record_id"])
    op.create_index("ix_wf_executions_tenant_workflow_at", "wf_executions",
                    ["tenant_id", "workflow", "at"])
    op.create_table(
        "wf_due_firings",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("workflow", sa.String(length=63), nullable=False),
        sa.Column("record_type", sa.String(length=40), nullable=False),
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_wf_due_firings_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("tenant_id", "workflow", "record_type", "record_id", "due_on",
                                name="pk_wf_due_firings"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", _ID, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workflow", sa.String(length=63), nullable=False),
        sa.Column("record_type", sa.String(length=40), nullable=False),
        sa.Column("record_id", _ID, nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name="fk_notifications_tenant_id_tenants"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name="fk_notifications_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_tenant_user", "notifications",
                    ["tenant_id", "user_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        scope = "NULLIF(current_setting('provisioner.tenant_id', true), '')::int"
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(f"CREATE POLICY tenant_isolation ON {table} USING "
                       f"(tenant_id = {scope}) WITH CHECK (tenant_id = {scope})")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
