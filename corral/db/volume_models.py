"""SQLAlchemy models of volumes: team-owned named volumes and which sandbox mounts which volume where."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.models import Base, UTCDateTime, utcnow


class VolumeRecord(Base):
    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("team_id", "name", name="uq_volumes_team_name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # Bearer token of the volume content API; kept in clear because GET /volumes/{id} hands it back (like envd tokens).
    token: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SandboxVolumeMount(Base):
    """One volume bound into one sandbox; a volume with a mount row of a running sandbox cannot be destroyed."""

    __tablename__ = "sandbox_volume_mounts"

    sandbox_id: Mapped[str] = mapped_column(ForeignKey("sandboxes.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(4096), primary_key=True)
    # No foreign key: rows of killed sandboxes (kept as history) must not pin a destroyed volume.
    volume_id: Mapped[str] = mapped_column(String(64), index=True)
    volume_name: Mapped[str] = mapped_column(String(100))
