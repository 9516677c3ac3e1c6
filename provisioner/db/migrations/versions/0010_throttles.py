"""login throttles: failed-login counters per (login id, client address) in the database

* ``throttles``: one row per throttled party (``login:<login>|<address>`` or
  ``client:<address>``): its failures, the last one's time, and until when it
  must wait (growing delays; see ``services.provisioning.auth``). Kept in the
  database so that a restart does not reset them and every worker sees them.

Revision ID: 0010_throttles
Revises: 0009_workflows
Create Date: 2026-12-07 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010_throttles'
down_revision = '0009_workflows'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('throttles',
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('blocked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_throttles'))
    )


def downgrade() -> None:
    op.drop_table('throttles')
