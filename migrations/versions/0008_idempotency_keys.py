"""idempotency keys: a submission's Idempotency-Key per owner, with its request's hash and its job

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'idempotency_keys',
        sa.Column('owner', sa.String(length=100), primary_key=True),
        sa.Column('key', sa.String(length=200), primary_key=True),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('job_id', sa.Integer(), sa.ForeignKey('jobs.id', ondelete='CASCADE'), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
    )
    op.create_index('ix_idempotency_keys_job_id', 'idempotency_keys', ['job_id'])


def downgrade() -> None:
    op.drop_index('ix_idempotency_keys_job_id', table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
