"""one-shot jobs: the phase of each trial and the job's current phase

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('phase', sa.String(length=16), nullable=True))
    op.add_column('trials', sa.Column('phase', sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column('trials', 'phase')
    op.drop_column('jobs', 'phase')
