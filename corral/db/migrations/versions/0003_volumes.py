"""Volumes: the volumes table and the sandbox_volume_mounts table.

Revision ID: 0003_volumes
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from corral.db.models import UTCDateTime

revision = "0003_volumes"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("team_id", sa.String(64), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("team_id", "name", name="uq_volumes_team_name"),
    )
    op.create_index("ix_volumes_team_id", "volumes", ["team_id"])
    op.create_table(
        "sandbox_volume_mounts",
        sa.Column("sandbox_id", sa.String(64), sa.ForeignKey("sandboxes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("path", sa.String(4096), primary_key=True),
        sa.Column("volume_id", sa.String(64), nullable=False),
        sa.Column("volume_name", sa.String(100), nullable=False),
    )
    op.create_index("ix_sandbox_volume_mounts_volume_id", "sandbox_volume_mounts", ["volume_id"])


def downgrade() -> None:
    op.drop_table("sandbox_volume_mounts")
    op.drop_table("volumes")
