"""Corral's state: SQLAlchemy models for teams, API keys and sandboxes, and the migrated database handle."""

from corral.db.engine import Database, open_database
from corral.db.models import ApiKey, Base, SandboxRecord, SnapshotRecord, Team
from corral.db.volume_models import SandboxVolumeMount, VolumeRecord

__all__ = ["ApiKey", "Base", "Database", "SandboxRecord", "SandboxVolumeMount", "SnapshotRecord", "Team",
           "VolumeRecord", "open_database"]
