"""tallies of told trials per job and status; an index for a job's trials best first

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('told_counts',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('trials', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'status')
    )
    # The trials already told, tallied as the scheduler tallies them from now on.
    op.execute("INSERT INTO told_counts (job_id, status, trials) "
               "SELECT job_id, status, count(*) FROM trials WHERE told GROUP BY job_id, status")
    # SQLite has no NULLS LAST in an index definition, and sorts nulls last in a DESC index anyway.
    nulls_last = " NULLS LAST" if op.get_bind().dialect.name == "postgresql" else ""
    op.create_index('ix_trials_job_best', 'trials', ['job_id', sa.text(f'score DESC{nulls_last}'), 'number'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_trials_job_best', table_name='trials')
    op.drop_table('told_counts')
