"""Pause/resume: lifecycle options of a sandbox and what its pause recorded.

Revision ID: 0002_pause
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from corral.db.models import UTCDateTime

revision = "0002_pause"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sandboxes") as b:
        b.add_column(sa.Column("on_timeout", sa.String(16), nullable=False, server_default="kill"))
        b.add_column(sa.Column("auto_resume", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("pause_mode", sa.String(16), nullable=True))
        b.add_column(sa.Column("paused_by", sa.String(16), nullable=True))
        b.add_column(sa.Column("paused_at", UTCDateTime(), nullable=True))
        b.add_column(sa.Column("env_vars", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sandboxes") as b:
        for name in ("env_vars", "paused_at", "paused_by", "pause_mode", "auto_resume", "on_timeout"):
            b.drop_column(name)
