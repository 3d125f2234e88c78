"""sharing the workers: the live Celery workers with their slots, and each job's queue

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'workers',
        sa.Column('name', sa.String(length=200), primary_key=True),
        sa.Column('queues', sa.String(length=200), nullable=False),
        sa.Column('slots', sa.Integer(), nullable=False),
        sa.Column('device', sa.String(length=32), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=False),
        sa.Column('heartbeat_at', UTCDateTime(), nullable=False),
    )
    # Filled in by the job's scheduler when it loads the job (scheduler/job_run.py).
    op.add_column('jobs', sa.Column('queue', sa.String(length=32), nullable=True))
    op.create_index('ix_jobs_queue_status', 'jobs', ['queue', 'status'])


def downgrade() -> None:
    op.drop_index('ix_jobs_queue_status', table_name='jobs')
    op.drop_column('jobs', 'queue')
    op.drop_table('workers')
