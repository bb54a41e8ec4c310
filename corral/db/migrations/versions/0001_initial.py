"""Initial schema: teams, api_keys, sandboxes.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from corral.db.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("team_id", sa.String(64), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])
    op.create_table(
        "sandboxes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("team_id", sa.String(64), sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("template_id", sa.String(200), nullable=False),
        sa.Column("alias", sa.String(200), nullable=True),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cpu_count", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("disk_mb", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("secure", sa.Boolean(), nullable=False),
        sa.Column("envd_access_token", sa.String(128), nullable=True),
        sa.Column("traffic_access_token", sa.String(128), nullable=True),
        sa.Column("allow_internet_access", sa.Boolean(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("killed_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_sandboxes_team_id", "sandboxes", ["team_id"])
    op.create_index("ix_sandboxes_state", "sandboxes", ["state"])


def downgrade() -> None:
    op.drop_table("sandboxes")
    op.drop_table("api_keys")
    op.drop_table("teams")
