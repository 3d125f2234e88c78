"""architecture keys of any length: a declared space of many layers has keys over 1,000 characters

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite never enforces a VARCHAR length, so its column already holds any key; rebuilding the
    # trials table there (as SQLite must, to change a type) would only risk its indexes.
    # On PostgreSQL, VARCHAR(n) to TEXT keeps every value as it is and rewrites nothing.
    if op.get_bind().dialect.name != 'sqlite':
        op.alter_column('trials', 'arch_key', type_=sa.Text(), existing_type=sa.String(length=1000),
                        existing_nullable=False)


def downgrade() -> None:
    # Refused by PostgreSQL (value too long) while a trial holds a longer key: none is cut short.
    if op.get_bind().dialect.name != 'sqlite':
        op.alter_column('trials', 'arch_key', type_=sa.String(length=1000), existing_type=sa.Text(),
                        existing_nullable=False)
