"""strategy calls logged between whole saves of a job's strategy state

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('strategy_calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('call', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('strategy_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_strategy_calls_job_id'), ['job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('strategy_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_strategy_calls_job_id'))

    op.drop_table('strategy_calls')
