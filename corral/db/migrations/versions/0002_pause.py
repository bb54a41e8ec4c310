"""Pause/resume: lifecycle options of a sandbox and what its pause recorded; snapshots (memory + files).

Revision ID: 0002_pause
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from corral.db.models import UTCDateTime

revision = "0002_pause"
down_revision = "0004_net"
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
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("team_id", sa.String(64), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("source_sandbox_id", sa.String(64), nullable=False),
        sa.Column("template_id", sa.String(200), nullable=False),
        sa.Column("alias", sa.String(200), nullable=True),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("cpu_count", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("disk_mb", sa.Integer(), nullable=False),
        sa.Column("lowerdir", sa.String(1000), nullable=False),
        sa.Column("env_vars", sa.JSON(), nullable=True),
        sa.Column("envd_access_token", sa.String(128), nullable=True),
        sa.Column("hidden", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_snapshots_team_id", "snapshots", ["team_id"])


def downgrade() -> None:
    op.drop_index("ix_snapshots_team_id", "snapshots")
    op.drop_table("snapshots")
    with op.batch_alter_table("sandboxes") as b:
        for name in ("env_vars", "paused_at", "paused_by", "pause_mode", "auto_resume", "on_timeout"):
            b.drop_column(name)
