"""derived_data: which computation of the derived data the database holds

One row per kind of derived data (``search``: search text, index and tallies;
``usage``: how disk usage is counted, the stored sizes) with the version of the
code that computed it. ``provisioner init`` compares it with the release's
(``provisioner.services.reindex.VERSIONS``) and rebuilds what an older release
computed differently. A database from before this table holds no rows: version 0.

Revision ID: 0015_derived_data
Revises: 0014_tenant_keys
Create Date: 2026-12-07 15:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015_derived_data'
down_revision = '0014_tenant_keys'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('derived_data',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_derived_data'))
    )


def downgrade() -> None:
    op.drop_table('derived_data')
